"""What every job family's workflows share with the rest of the service: the memo key of a
job run's summary (read by `schedules status`) and the custom search attributes the workflows
set, which the namespace must have registered (the worker checks at start)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

RUN_MEMO_KEY = "job_run"

# ProcessSession sets it (an Int) so an operator finds a session's workflow by its id.
SESSION_ID_SEARCH_ATTRIBUTE = "SessionId"
SEARCH_ATTRIBUTES: Mapping[str, str] = {SESSION_ID_SEARCH_ATTRIBUTE: "Int"}

# The body of every activity interface in the families' contracts: workflows call an interface
# (its name and signature type the call); the worker runs the implementation registered under
# the same name (`activities.interfaces.implements`).
RUNS_ON_THE_WORKER = "an activity interface: the worker runs its implementation in activities/"


@dataclass
class TokenUsage:
    """What LLM requests cost: the one usage type of the AI client, the activities' results and
    the stored rows (`SessionUsage` adds a session's page counts)."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            model=self.model or other.model,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            requests=self.requests + other.requests,
        )


@dataclass(frozen=True)
class JobSchedule:
    """Exactly one of `cron` (in SCHEDULE_TIMEZONE) and `every` is set.

    Runs never overlap (a tick while the previous run is still going is skipped), and every run
    is bounded by `execution_timeout`, so a stuck run cannot block its schedule for ever.
    `catchup_window`: how late a missed tick (Temporal down) may still run; long for daily and
    weekly jobs, short for frequent ones whose next tick comes soon anyway. A job run `every`
    interval gets that interval for both unless it says otherwise; a cron job must say.
    """

    schedule_id: str
    workflow: str
    arg: Any
    description: str
    cron: str | None = None
    every: timedelta | None = None
    execution_timeout: timedelta | None = None
    catchup_window: timedelta | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.schedule_id!r}: set exactly one of cron= and every=")
        for bound in ("execution_timeout", "catchup_window"):
            if getattr(self, bound) is None:
                if self.every is None:
                    raise ValueError(f"schedule {self.schedule_id!r}: a cron job needs {bound}=")
                object.__setattr__(self, bound, self.every)

    @property
    def run_timeout(self) -> timedelta:
        assert self.execution_timeout is not None  # set in __post_init__
        return self.execution_timeout

    @property
    def catchup(self) -> timedelta:
        assert self.catchup_window is not None  # set in __post_init__
        return self.catchup_window
