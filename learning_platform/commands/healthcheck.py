"""`learning-jobs healthcheck`: the image's HEALTHCHECK, for worker and API alike.

Exit 0 when HEALTHCHECK_URL (default: the worker's http://127.0.0.1:METRICS_PORT/metrics)
answers 200 within the timeout, 1 otherwise. The API's containers set HEALTHCHECK_URL to
their /healthz, which answers 503 while the database or its LISTEN connection is away.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

# Below the compose healthcheck's own timeout; a worker's scrape reads the database (≤ 3 s).
TIMEOUT_SECONDS = 8.0


def health_url(environ: dict[str, str]) -> str:
    explicit = environ.get("HEALTHCHECK_URL")
    if explicit:
        return explicit
    return f"http://127.0.0.1:{environ.get('METRICS_PORT', '9464')}/metrics"


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when healthy, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}: {exc.read(500).decode(errors='replace')}"
    except (OSError, TimeoutError) as exc:
        return f"{url} unreachable: {exc}"
    return None if status == 200 else f"{url} answered {status}"


def main(argv: Sequence[str] | None = None) -> None:
    # No argument parsing: runs every few seconds in each container, so it stays this small.
    del argv
    problem = check(health_url(dict(os.environ)))
    if problem is not None:
        sys.exit(problem)
    print("healthy")
