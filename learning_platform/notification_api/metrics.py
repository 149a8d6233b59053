"""The API's Prometheus metrics, in a registry of the app's own (two apps may share a process)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BY_REASON = ["reason"]
FETCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        self.open_streams = gauge("sse_streams_open", "Notification streams open now")
        self.events_delivered = counter(
            "sse_events_delivered", "Notifications written to a client's stream"
        )
        self.late_events = counter(
            "sse_late_events",
            "Notifications that committed after a higher id of the same user (sent without id:)",
        )
        self.streams_rejected = counter(
            "sse_streams_rejected", "Stream requests refused, by reason", BY_REASON
        )
        self.streams_dropped = counter(
            "sse_streams_dropped",
            "Streams the server closed (the client may resume with Last-Event-ID), by reason",
            BY_REASON,
        )
        self.listener_up = gauge(
            "notification_listener_up", "1 while the process LISTENs on the notifications channel"
        )
        self.listener_reconnects = counter(
            "notification_listener_reconnects", "LISTEN connections re-established after a loss"
        )
        self.notifications_fetched = counter(
            "notification_rows_fetched", "Notified rows read from the table for open streams"
        )
        self.fetch_seconds = Histogram(
            "notification_fetch_seconds",
            "Time to read one batch of notified rows",
            buckets=FETCH_BUCKETS,
            registry=self.registry,
        )

    def watch_listener(self, is_listening: Callable[[], bool]) -> None:
        self.listener_up.set_function(lambda: float(is_listening()))
