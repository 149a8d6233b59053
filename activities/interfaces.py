"""Binding an implementation to the activity interface workflows call.

Each family's `contracts.py` declares its activities as interfaces (an `ActivityInterfaces`
class: one `name: Activity[Input, Result]` line each, made into an `@activity.defn` function whose
body only raises): workflows call those, so the activity's name and its input and result types
come from one definition. `@implements(contracts.FamilyActivities.x)` registers a method under x's
name and refuses, at import, a method whose parameters or result differ from x's (mypy checks
the same statically)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from temporalio import activity

from learning_platform.core.errors import ServiceError

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


class InterfaceMismatchError(ServiceError, TypeError):
    """An implementation whose signature differs from its interface's."""


def _signature(function: Callable[..., object], skip_self: bool) -> list[object]:
    hints = typing.get_type_hints(function)
    parameters = list(inspect.signature(function).parameters)[1 if skip_self else 0 :]
    return [*(hints.get(p) for p in parameters), hints.get("return")]


def implements(
    interface: Callable[P, Awaitable[R]],
) -> Callable[
    [Callable[Concatenate[S, P], Awaitable[R]]], Callable[Concatenate[S, P], Awaitable[R]]
]:
    def register(
        method: Callable[Concatenate[S, P], Awaitable[R]],
    ) -> Callable[Concatenate[S, P], Awaitable[R]]:
        expected, got = _signature(interface, False), _signature(method, True)
        if expected != got:
            raise InterfaceMismatchError(
                f"{method.__qualname__} implements activity {interface.__name__!r} but takes/"
                f"returns {got} instead of {expected}: make the two signatures the same"
            )
        method.__activity_interface__ = interface  # type: ignore[attr-defined]
        return activity.defn(name=interface.__name__)(method)

    return register
