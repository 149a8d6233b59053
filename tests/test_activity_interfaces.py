"""Workflows call activities through the interfaces in the families' contracts; the worker
registers implementations bound to them with `@implements`. These tests hold the two together."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from temporalio import activity

import activities
import learning_platform.jobs
from activities.interfaces import InterfaceMismatchError, implements
from learning_platform.jobs.contracts import (
    RUNS_ON_THE_WORKER,
    Activity,
    ActivityInterfaces,
    NoInputActivity,
)


def modules_of(package: ModuleType) -> Iterator[ModuleType]:
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        yield importlib.import_module(info.name)


def activity_name(function: Callable[..., Any]) -> str | None:
    definition = activity._Definition.from_callable(function)
    return None if definition is None else definition.name


def interfaces() -> dict[str, Callable[..., Any]]:
    found = {}
    for module in modules_of(learning_platform.jobs):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ActivityInterfaces) and cls.__module__ == module.__name__:
                for _, function in inspect.getmembers(cls, inspect.iscoroutinefunction):
                    name = activity_name(function)
                    assert name is not None, f"{function.__qualname__} is no activity"
                    assert name not in found, f"activity {name!r} is declared twice"
                    found[name] = function
    return found


def implementations() -> dict[str, list[Callable[..., Any]]]:
    found: dict[str, list[Callable[..., Any]]] = {}
    for module in modules_of(activities):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for _, method in inspect.getmembers(cls, inspect.iscoroutinefunction):
                name = activity_name(method)
                if name is not None:
                    found.setdefault(name, []).append(method)
    return found


def test_every_interface_has_exactly_one_implementation_bound_to_it() -> None:
    declared, implemented = interfaces(), implementations()
    assert declared, "no activity interfaces found in learning_platform/jobs/*/contracts.py"
    assert set(implemented) == set(declared)
    for name, methods in implemented.items():
        assert len(methods) == 1, f"activity {name!r} is implemented {len(methods)} times"
        bound = getattr(methods[0], "__activity_interface__", None)
        assert bound is declared[name], f"{methods[0].__qualname__}: use @implements"


@dataclass
class Params:
    n: int


class Counting(ActivityInterfaces):
    count_things: Activity[Params, int]
    count_all: NoInputActivity[list[int] | None]


count_things = Counting.count_things


def test_each_annotation_becomes_an_activity_with_its_name_input_and_result() -> None:
    with_input = activity._Definition.must_from_callable(Counting.count_things)
    assert (with_input.name, with_input.arg_types, with_input.ret_type) == (
        "count_things",
        [Params],
        int,
    )
    without = activity._Definition.must_from_callable(Counting.count_all)
    assert (without.name, without.arg_types, without.ret_type) == (
        "count_all",
        [],
        list[int] | None,
    )


async def test_an_interface_called_in_process_says_it_runs_on_the_worker() -> None:
    with pytest.raises(NotImplementedError, match=RUNS_ON_THE_WORKER):
        await Counting.count_things(Params(1))


def test_an_interface_of_two_inputs_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match=r"Wide\.pair: an activity takes one dataclass input"):

        class Wide(ActivityInterfaces):
            pair: Callable[[Params, Params], Awaitable[int]]


def test_an_implementation_with_another_signature_is_refused_at_import() -> None:
    with pytest.raises(InterfaceMismatchError, match=r"count_things.*make the two signatures"):

        class Wrong:
            @implements(count_things)  # type: ignore[arg-type]
            async def count_things(self, params: Params) -> str:
                return str(params.n)


def test_an_implementation_registers_under_the_interface_name() -> None:
    class Right:
        @implements(count_things)
        async def count(self, params: Params) -> int:
            return params.n

    assert activity_name(Right().count) == "count_things"
