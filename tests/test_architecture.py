"""The layout's import rules (docs/architecture.md), checked on the source:

- workflows import no I/O library, no activity code, and of the package only the job
  families' `contracts` modules (plain data and activity interfaces);
- `contracts` modules import only the standard library, Temporal's activity definitions and
  other contracts at run time (the settings type of `schedules(settings)` for annotations only);
- the package imports neither `workflows` nor `activities`;
- production code imports nothing of the dev tooling (`learning_platform.dev`);
- the notification API uses only the shared core (no job family's code).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "learning_platform"
IO_LIBRARIES = {
    "sqlalchemy", "asyncpg", "httpx", "aiohttp", "openai", "aioboto3", "botocore", "trafilatura",
}  # fmt: skip
CONTRACT_IMPORTS = {"__future__", "collections", "dataclasses", "datetime", "enum", "typing"}


def is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (imported for annotations only)."""
    found: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        pending += [
            child for child in ast.iter_child_nodes(node) if not is_type_checking_block(child)
        ]
    return found


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports at run time, as dotted names (`from a.b import c`: `a.b`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top_levels(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def is_contracts(module: str) -> bool:
    return module.startswith("learning_platform.jobs.") and module.endswith(".contracts")


def python_files(folder: Path) -> list[Path]:
    found = sorted(folder.rglob("*.py"))
    assert found, f"no modules under {folder}"
    return found


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", python_files(ROOT / "workflows"), ids=name)
def test_workflows_import_no_io_no_activities_and_only_contracts(path: Path) -> None:
    imported = imported_modules(path)
    assert top_levels(imported) & (IO_LIBRARIES | {"activities"}) == set()
    package_imports = {m for m in imported if m.split(".")[0] == "learning_platform"}
    assert {m for m in package_imports if not is_contracts(m)} == set()


CONTRACTS = sorted(PACKAGE.glob("jobs/**/contracts.py"))


@pytest.mark.parametrize("path", CONTRACTS, ids=name)
def test_contracts_are_plain_data_and_activity_interfaces(path: Path) -> None:
    imported = imported_modules(path)
    allowed = {m for m in imported if m.split(".")[0] in CONTRACT_IMPORTS or is_contracts(m)}
    allowed |= {m for m in imported if m in {"temporalio.activity", "temporalio"}}
    assert imported - allowed == set()


def test_every_job_family_has_its_contracts() -> None:
    families = {p.parent.name for p in PACKAGE.glob("jobs/*/__init__.py")}
    assert families == {p.parent.name for p in CONTRACTS if p.parent.name != "jobs"}
    assert families <= {p.stem for p in (ROOT / "workflows").glob("*.py")}
    assert families <= {p.stem for p in (ROOT / "activities").glob("*.py")}


@pytest.mark.parametrize("path", python_files(PACKAGE), ids=name)
def test_package_imports_neither_workflows_nor_activities(path: Path) -> None:
    assert top_levels(imported_modules(path)) & {"workflows", "activities"} == set()


PRODUCTION = [
    p
    for p in [*python_files(PACKAGE), *python_files(ROOT / "activities"), ROOT / "worker.py"]
    if "dev" not in p.relative_to(PACKAGE if p.is_relative_to(PACKAGE) else ROOT).parts[:1]
]


@pytest.mark.parametrize("path", PRODUCTION, ids=name)
def test_production_code_imports_no_dev_tooling(path: Path) -> None:
    imported = imported_modules(path)
    assert {m for m in imported if m.startswith("learning_platform.dev")} == set()


@pytest.mark.parametrize("path", python_files(PACKAGE / "notification_api"), ids=name)
def test_notification_api_uses_only_the_shared_core(path: Path) -> None:
    imported = {m for m in imported_modules(path) if m.startswith("learning_platform.")}
    outside = {
        m
        for m in imported
        if not m.startswith(("learning_platform.core", "learning_platform.notification_api"))
    }
    assert outside == set()


def test_every_exception_the_service_defines_derives_from_the_one_base() -> None:
    import importlib
    import inspect
    import pkgutil

    import activities
    import learning_platform
    from learning_platform.core.errors import ServiceError

    defined: list[type[BaseException]] = []
    for package in (learning_platform, activities):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith("learning_platform.migrations.") or info.name.endswith(
                "__main__"
            ):
                continue
            module = importlib.import_module(info.name)
            defined += [
                cls
                for _, cls in inspect.getmembers(module, inspect.isclass)
                if issubclass(cls, BaseException) and cls.__module__ == module.__name__
            ]
    assert len(defined) >= 10
    assert [c.__qualname__ for c in defined if not issubclass(c, ServiceError)] == []
