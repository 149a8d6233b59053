"""Every metric an alert rule or a dashboard panel queries is one the service exports.

The names are read from real processes: a worker that ran a job, a worker whose job failed
(the SDK's failure counters appear only then), and the API.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client, WorkflowFailureError

from learning_platform.core.settings import Settings
from learning_platform.jobs.browsing_sessions.contracts import UpdateMetricsInput
from tests.sse_helpers import api_process
from tests.test_metrics import scrape
from tests.worker_process import running_worker
from workflows.browsing_sessions import UpdateMetrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Metrics of the Temporal server (its own /metrics, job "temporal"), not of this service.
SERVER_PREFIXES = ("temporal_server_",)

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_OPERATORS = {"and", "or", "unless", "offset", "le", "inf", "nan"}
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels dropped)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    stripped = re.sub(r"\{[^}]*\}", " ", stripped)  # label matchers
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # ranges
    stripped = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped
    )
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", stripped):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _PROMQL_WORDS | _PROMQL_OPERATORS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'sum by (job) (increase(learning_jobs_runs_total{outcome="failure"}[1h])) > 0 '
        'or count(up{job="worker"} == 1) unless on (job) x_total offset 26h '
        "and histogram_quantile(0.95, sum by (le) (rate(lat_bucket[5m]))) > 5"
    )
    assert metric_names(expr) == {"learning_jobs_runs_total", "up", "x_total", "lat_bucket"}


def rule_expressions() -> list[str]:
    exprs = []
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            exprs += [rule["expr"] for rule in group["rules"]]
    return exprs


def dashboard_expressions() -> list[str]:
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((DEPLOY / "grafana").rglob("*.json")):
        walk(json.loads(path.read_text()))
    return exprs


def exported_names(metrics_text: str) -> set[str]:
    """Sample names a page exports, including those of labelled families with no child yet."""
    names = set()
    for family in text_string_to_metric_families(metrics_text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.usefixtures("engine")
async def test_alerts_and_dashboards_query_only_exported_metrics(
    client: Client, settings: Settings, tmp_path: Path, empty_database: str
) -> None:
    # Reachable (the worker's start-up check passes) but without the schema: its jobs fail.
    failing_queue = f"{settings.task_queue}-failing"
    pages = []
    with (
        running_worker(settings) as healthy,
        running_worker(settings, TASK_QUEUE=failing_queue, DATABASE_URL=empty_database) as broken,
    ):
        await client.execute_workflow(
            UpdateMetrics.run,
            UpdateMetricsInput(),
            id=f"update-metrics-{uuid.uuid4()}",
            task_queue=settings.task_queue,
        )
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                UpdateMetrics.run,
                UpdateMetricsInput(),
                id=f"update-metrics-{uuid.uuid4()}",
                task_queue=failing_queue,
            )
        pages += [await scrape(healthy.metrics_port), await scrape(broken.metrics_port)]
    async with api_process(settings, tmp_path / "api.log") as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        pages.append(await scrape(port))
    exported = PROMETHEUS_SERIES.union(*(exported_names(page) for page in pages))

    queried = {name for expr in rule_expressions() for name in metric_names(expr)}
    assert "learning_jobs_runs_total" in queried
    queried_by_dashboard = {name for expr in dashboard_expressions() for name in metric_names(expr)}
    assert "sse_streams_open" in queried_by_dashboard
    unknown = {
        name
        for name in queried | queried_by_dashboard
        if name not in exported and not name.startswith(SERVER_PREFIXES)
    }
    assert unknown == set(), f"queried but not exported by the worker or the API: {unknown}"
