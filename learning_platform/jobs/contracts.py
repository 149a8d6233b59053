"""What every job family's workflows share with the rest of the service: the memo key of a
job run's summary (read by `schedules status`), the custom search attributes the workflows
set, which the namespace must have registered (the worker checks at start), the base of the
families' activity interfaces (`ActivityInterfaces`), token usage and `JobSchedule`."""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity

RUN_MEMO_KEY = "job_run"

# ProcessSession sets it (an Int) so an operator finds a session's workflow by its id.
SESSION_ID_SEARCH_ATTRIBUTE = "SessionId"
SEARCH_ATTRIBUTES: Mapping[str, str] = {SESSION_ID_SEARCH_ATTRIBUTE: "Int"}

# What an activity interface raises if called in-process: only the worker's implementation runs.
RUNS_ON_THE_WORKER = "an activity interface: the worker runs its implementation in activities/"

Params = TypeVar("Params")
Result = TypeVar("Result")

# The type of an activity interface: `Activity[Params, Result]` takes one dataclass input,
# `NoInputActivity[Result]` none. Workflows call it; its signature types the call.
Activity = Callable[[Params], Awaitable[Result]]
NoInputActivity = Callable[[], Awaitable[Result]]


class ActivityInterfaces:
    """A family's activities as workflows call them, one annotated line each:

        class RetentionActivities(ActivityInterfaces):
            prune_expired_rows: Activity[PruneParams, int]

    Each annotation becomes an `@activity.defn` function named after the attribute, with the
    annotation's input and result types, so `workflow.execute_activity(
    RetentionActivities.prune_expired_rows, ...)` is typed by it (no `result_type=`) and
    go-to-definition lands on the line. The worker registers the implementation bound to it
    with `activities.interfaces.implements`. Define the class after the types it names.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, hint in typing.get_type_hints(cls).items():
            setattr(cls, name, _interface(cls, name, hint))


def _interface(owner: type, name: str, hint: object) -> Callable[..., Awaitable[Any]]:
    inputs, awaited = typing.get_args(hint)
    (result,) = typing.get_args(awaited)
    if len(inputs) > 1:
        raise TypeError(f"{owner.__name__}.{name}: an activity takes one dataclass input or none")

    async def with_input(params: Any) -> Any:
        raise NotImplementedError(RUNS_ON_THE_WORKER)

    async def without_input() -> Any:
        raise NotImplementedError(RUNS_ON_THE_WORKER)

    function = with_input if inputs else without_input
    function.__annotations__ = (
        {"params": inputs[0], "return": result} if inputs else {"return": result}
    )
    function.__name__ = name
    function.__qualname__ = f"{owner.__qualname__}.{name}"
    function.__module__ = owner.__module__
    return activity.defn(name=name)(function)


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
