"""The import direction of DESIGN.md, checked on the source: entry points → workflows →
contracts; activities → domain package; the domain package imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_LIBRARIES = {"sqlalchemy", "asyncpg", "httpx", "openai", "aioboto3", "botocore", "trafilatura"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    found = sorted((ROOT / package).rglob("*.py"))
    assert found, f"no modules under {package}/"
    return found


@pytest.mark.parametrize("path", modules("workflows"), ids=lambda p: p.name)
def test_workflows_import_no_io_and_no_activity_code(path: Path) -> None:
    forbidden = IO_LIBRARIES | {"learning_platform", "activities"}
    assert imported_top_levels(path) & forbidden == set()


@pytest.mark.parametrize("path", modules("contracts"), ids=lambda p: p.name)
def test_contracts_are_plain_data(path: Path) -> None:
    assert imported_top_levels(path) <= {"__future__", "dataclasses", "datetime", "typing", "enum"}


@pytest.mark.parametrize(
    "path", modules("learning_platform"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_domain_package_imports_neither_workflows_nor_activities(path: Path) -> None:
    assert imported_top_levels(path) & {"workflows", "activities", "scheduling"} == set()
