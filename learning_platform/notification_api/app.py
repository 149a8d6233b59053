"""The ASGI app: `create_app(settings)` → Starlette with the stream, /healthz and /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from learning_platform.core.database import libpq_url, resolve_database_url
from learning_platform.core.settings import Settings
from learning_platform.notification_api.auth import TokenVerifier, uses_dev_secret
from learning_platform.notification_api.browser import (
    COOKIE_NAME,
    STREAM_COOKIE_PATH,
    StreamCookies,
    check_origin,
)
from learning_platform.notification_api.edge import Edge
from learning_platform.notification_api.hub import NotificationHub
from learning_platform.notification_api.metrics import ApiMetrics
from learning_platform.notification_api.refusals import RETRY_SOON, Refusal
from learning_platform.notification_api.store import DATABASE_ERRORS, latest_notification_id
from learning_platform.notification_api.stream_request import (
    CURSOR_PARAMETER,
    last_event_id,
    refuse_query_string,
)
from learning_platform.notification_api.streams import (
    NotificationStream,
    NotificationStreamResponse,
)

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/notifications/stream"
LIVE_PAGE_PATH = "/dev/live"
LIVE_PAGE = Path(__file__).parent / "pages" / "live.html"
_HEALTH_TIMEOUT_SECONDS = 2.0


class NotificationApi:
    """The endpoints and what they share; the database parts exist while the app runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(settings)
        self.cookies = StreamCookies(settings, STREAM_PATH)
        self.allowed_origins = frozenset(settings.api_cors_origins)
        self.metrics = ApiMetrics()
        self._pool: asyncpg.Pool | None = None
        self._hub: NotificationHub | None = None

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if uses_dev_secret(self.settings):
            log.warning(
                "JWT_SECRET is the built-in DEVELOPMENT secret: anyone can mint tokens; "
                "set JWT_SECRET or JWT_PUBLIC_KEY outside development"
            )
        if not self.cookies.enabled:
            log.warning(
                "browser stream cookies are off: with JWT_PUBLIC_KEY set, "
                "set API_STREAM_COOKIE_SECRET for pages to use the stream"
            )
        # Resolving may start the embedded PostgreSQL, which blocks: keep it off the loop.
        dsn = libpq_url(await asyncio.to_thread(resolve_database_url, self.settings))
        # min_size=0: the API starts while the database is away and /healthz says 503.
        self._pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=self.settings.database_pool_size
        )
        self._hub = NotificationHub(
            dsn,
            self._pool,
            self.metrics,
            queue_size=self.settings.sse_queue_size,
            backoff_seconds=self.settings.notification_listener_backoff_seconds,
            backoff_max_seconds=self.settings.notification_listener_backoff_max_seconds,
        )
        await self._hub.start()
        log.info("notification API ready", extra={"jwt_algorithm": self.verifier.algorithm})
        try:
            yield
        finally:
            await self._hub.stop()
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the app's lifespan has not started"
        return self._pool

    @property
    def hub(self) -> NotificationHub:
        assert self._hub is not None, "the app's lifespan has not started"
        return self._hub

    async def stream(self, request: Request) -> Response:
        try:
            user_id, last_event_id = self._stream_request(request)
        except Refusal as refusal:
            self.metrics.streams_rejected.labels(refusal.error).inc()
            return refusal.response()
        over_limit = self._over_limit(user_id)
        if over_limit is not None:
            return over_limit.response()
        # Subscribed before the backlog is read (see streams.py), in the same loop step as
        # the limit check so concurrent requests cannot both squeeze under a limit.
        subscription = self.hub.subscribe(user_id)
        try:
            cursor = (
                last_event_id
                if last_event_id is not None
                else await latest_notification_id(self.pool, user_id)
            )
        except DATABASE_ERRORS as exc:
            self.hub.unsubscribe(subscription)
            self.metrics.streams_rejected.labels("database_unavailable").inc()
            log.warning("stream refused: database unavailable", extra={"error": repr(exc)})
            return Refusal(
                503, "unavailable", "the database is unavailable; retry shortly", RETRY_SOON
            ).response()
        except BaseException:
            self.hub.unsubscribe(subscription)
            raise
        stream = NotificationStream(
            self.pool,
            subscription,
            self.metrics,
            cursor,
            self.settings.sse_queue_size,
            retry_milliseconds=self.settings.sse_retry_milliseconds,
        )
        return NotificationStreamResponse(
            stream,
            subscription,
            self.hub,
            self.metrics,
            heartbeat_seconds=self.settings.sse_heartbeat_seconds,
            send_timeout_seconds=self.settings.sse_send_timeout_seconds,
        )

    def _stream_request(self, request: Request) -> tuple[int, int | None]:
        """The user and Last-Event-ID of a stream request, or the Refusal that says what to fix."""
        check_origin(request, self.allowed_origins)
        query = request.url.query
        refuse_query_string(query, allowed=CURSOR_PARAMETER)
        authorization = request.headers.getlist("authorization")
        cookie = request.cookies.get(COOKIE_NAME)
        # A server client's header wins; a browser's EventSource can only send the cookie.
        if authorization or cookie is None:
            user_id = self.verifier.user_id(authorization)
        else:
            user_id = self.cookies.user_id(cookie)
        return user_id, last_event_id(request.headers.getlist("last-event-id"), query)

    async def issue_stream_cookie(self, request: Request) -> Response:
        try:
            check_origin(request, self.allowed_origins)
            refuse_query_string(request.url.query)
            user_id = self.verifier.user_id(request.headers.getlist("authorization"))
        except Refusal as refusal:
            self.metrics.streams_rejected.labels(refusal.error).inc()
            return refusal.response()
        return self.cookies.issue(user_id)

    async def clear_stream_cookie(self, request: Request) -> Response:
        try:
            check_origin(request, self.allowed_origins)
        except Refusal as refusal:
            return refusal.response()
        return self.cookies.clear()

    def _over_limit(self, user_id: int) -> Refusal | None:
        if self.hub.streams_of(user_id) >= self.settings.sse_max_connections_per_user:
            self.metrics.streams_rejected.labels("user_limit").inc()
            limit = self.settings.sse_max_connections_per_user
            return Refusal(
                429,
                "too_many_streams",
                f"user {user_id} already has {limit} open streams (the limit); close one first",
                RETRY_SOON,
            )
        if self.hub.open_streams >= self.settings.sse_max_connections:
            self.metrics.streams_rejected.labels("process_limit").inc()
            return Refusal(
                429,
                "server_busy",
                f"this server holds its limit of {self.settings.sse_max_connections} streams; "
                "retry shortly",
                RETRY_SOON,
            )
        return None

    async def healthz(self, _request: Request) -> Response:
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), _HEALTH_TIMEOUT_SECONDS)
            database = "ok"
        except DATABASE_ERRORS as exc:
            database = f"unavailable: {exc!r}"
        listener = "ok" if self.hub.listening else "reconnecting"
        healthy = database == "ok" and listener == "ok"
        return JSONResponse(
            {
                "status": "ok" if healthy else "unavailable",
                "database": database,
                "listener": listener,
                "open_streams": self.hub.open_streams,
            },
            status_code=200 if healthy else 503,
        )

    async def live_page(self, _request: Request) -> Response:
        return FileResponse(LIVE_PAGE, media_type="text/html")

    async def metrics_endpoint(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings) -> Starlette:
    api = NotificationApi(settings)
    routes = [
        Route(STREAM_PATH, api.stream, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.metrics_endpoint, methods=["GET"]),
    ]
    if api.cookies.enabled:
        routes.append(Route(STREAM_COOKIE_PATH, api.issue_stream_cookie, methods=["POST"]))
        routes.append(Route(STREAM_COOKIE_PATH, api.clear_stream_cookie, methods=["DELETE"]))
    if settings.api_dev_live_page:
        routes.append(Route(LIVE_PAGE_PATH, api.live_page, methods=["GET"]))
    middleware = [
        Middleware(
            Edge,
            routes={route.path for route in routes},
            max_headers=settings.api_max_headers,
            max_header_bytes=settings.api_max_header_bytes,
        )
    ]
    if settings.api_cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.api_cors_origins,
                allow_credentials=True,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Last-Event-ID"],
                max_age=600,
            )
        )
    return Starlette(routes=routes, middleware=middleware, lifespan=api.lifespan)
