"""The API's Prometheus metrics, in a registry of the app's own (two apps may share a process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.open_streams = Gauge(
            "sse_streams_open", "Notification streams open now", registry=self.registry
        )
        self.events_delivered = Counter(
            "sse_events_delivered",
            "Notifications written to a client's stream",
            registry=self.registry,
        )
        self.late_events = Counter(
            "sse_late_events",
            "Notifications that committed after a higher id of the same user (sent without id:)",
            registry=self.registry,
        )
        self.streams_rejected = Counter(
            "sse_streams_rejected",
            "Stream requests refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.streams_dropped = Counter(
            "sse_streams_dropped",
            "Streams the server closed (the client may resume with Last-Event-ID), by reason",
            ["reason"],
            registry=self.registry,
        )
        self.listener_up = Gauge(
            "notification_listener_up",
            "1 while the process LISTENs on the notifications channel",
            registry=self.registry,
        )
        self.listener_reconnects = Counter(
            "notification_listener_reconnects",
            "LISTEN connections re-established after a loss",
            registry=self.registry,
        )
        self.notifications_fetched = Counter(
            "notification_rows_fetched",
            "Notified rows read from the table for open streams",
            registry=self.registry,
        )
        self.fetch_seconds = Histogram(
            "notification_fetch_seconds",
            "Time to read one batch of notified rows",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )

    def watch_listener(self, is_listening: Callable[[], bool]) -> None:
        self.listener_up.set_function(lambda: float(is_listening()))
