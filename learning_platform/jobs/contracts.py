"""What every job family's workflows share with the rest of the service: the memo key of a
job run's summary (read by `schedules status`) and the custom search attributes the workflows
set, which the namespace must have registered (the worker checks at start)."""

from __future__ import annotations

from collections.abc import Mapping

from learning_platform.jobs.ai_processing.contracts import SESSION_ID_SEARCH_ATTRIBUTE

RUN_MEMO_KEY = "job_run"

SEARCH_ATTRIBUTES: Mapping[str, str] = {SESSION_ID_SEARCH_ATTRIBUTE: "Int"}
