"""Entry point: the notification API (Server-Sent Events), served by uvicorn.

    learning-jobs api                  # serves on API_HOST:API_PORT
    learning-jobs api token USER_ID    # prints a token for USER_ID signed with JWT_SECRET

    curl -N -H "Authorization: Bearer $(learning-jobs api token 1)" \\
        localhost:8000/v1/notifications/stream
"""

from __future__ import annotations

import logging

import uvicorn

from learning_platform.commands.arguments import CommandParser, bounded_int, database_id
from learning_platform.commands.process_exit import reports_operator_errors
from learning_platform.core.logs import configure_logging
from learning_platform.core.settings import Settings, get_settings
from learning_platform.notification_api import create_app
from learning_platform.notification_api.auth import mint_token
from learning_platform.notification_api.server import server_config

log = logging.getLogger("api")
# A development token lives at most a year.
MAX_TOKEN_MINUTES = 366 * 24 * 60


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    config = server_config(
        create_app(settings), settings, host=settings.api_host, port=settings.api_port
    )
    log.info(
        "notification API starting", extra={"host": settings.api_host, "port": settings.api_port}
    )
    uvicorn.Server(config).run()


@reports_operator_errors
def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="learning-jobs api", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (the default)")
    token = commands.add_parser("token", help="print a development token for a user")
    token.add_argument("user_id", type=database_id)
    token.add_argument(
        "--ttl-minutes", type=bounded_int(1, MAX_TOKEN_MINUTES, "minutes"), default=60 * 24
    )
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.command == "token":
        print(mint_token(settings, args.user_id, ttl_seconds=args.ttl_minutes * 60))
    else:
        serve(settings)
