"""Leaves in the image's venv only what the service needs at run time (Dockerfile, build stage).

    python slim_venv.py prune       after the dependencies are installed
    python slim_venv.py precompile  after the project is installed, with the venv's python

`prune` removes what a wheel ships for building, testing or type checking, strips debug symbols
from shared objects, and drops data only code paths this service never takes would read.
`precompile` writes bytecode for exactly the modules the entry points import when they start:
they start as fast as with full bytecode while the modules imported later, or never (most of
openai's types, botocore's services), stay source only. Run it with PYTHONDONTWRITEBYTECODE=1 so
that importing writes nothing by itself.
"""

from __future__ import annotations

import importlib
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

# What each command of the image's `learning-jobs` imports (learning_platform/commands/cli.py).
ENTRY_MODULES = (
    "learning_platform.commands.cli",
    "worker",
    "schedules",
    "learning_platform.commands.api",
    "learning_platform.commands.codec_server",
    "learning_platform.commands.outbox",
    "learning_platform.commands.sessions",
    "learning_platform.commands.migrate",
    "learning_platform.commands.healthcheck",
)
# Directories a wheel ships for its own tests or for building it from source.
# (name, parent directory it must sit in, or None for anywhere)
BUILD_AND_TEST_DIRS = (("tests", None), ("sdk-core", "bridge"), ("src", "bridge"))
SOURCE_SUFFIXES = (".pyi", ".c", ".h", ".pyx", ".pxd", ".rs")
# aiobotocore talks only to S3; STS stays for the web-identity and assume-role credential
# providers of container platforms. Every other service model is unused.
BOTOCORE_SERVICES = {"s3", "sts"}
# Babel's locale data is read only by courlan's URL language filter, which trafilatura calls
# when it is given a target language; the crawler never gives one, and courlan treats an
# unknown locale as "no opinion". root and English keep `Locale("en")` working.
BABEL_LOCALES = {"root.dat", "en.dat", "LICENSE.unicode"}


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def removed_size(paths: Iterator[Path]) -> int:
    """Bytes freed by deleting `paths` (listed before anything is deleted)."""
    total = 0
    for path in sorted(set(paths)):
        if path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        elif path.exists():
            total += path.stat().st_size
            path.unlink()
    return total


def build_and_test_files(root: Path) -> Iterator[Path]:
    for name, parent in BUILD_AND_TEST_DIRS:
        for found in root.glob(f"*/**/{name}"):
            if found.is_dir() and (parent is None or found.parent.name == parent):
                yield found
    yield from root.glob("temporalio/bridge/Cargo.*")
    for suffix in SOURCE_SUFFIXES:
        yield from root.rglob(f"*{suffix}")
    yield from root.rglob("__pycache__")


def unused_data(root: Path) -> Iterator[Path]:
    for service in (root / "botocore" / "data").iterdir():
        if service.is_dir() and service.name not in BOTOCORE_SERVICES:
            yield service
    for locale in (root / "babel" / "locale-data").iterdir():
        if locale.name not in BABEL_LOCALES:
            yield locale


def strip_shared_objects(root: Path) -> None:
    objects = [str(path) for path in root.rglob("*.so*") if path.is_file()]
    subprocess.run(["strip", "--strip-unneeded", *objects], check=True)


def prune() -> None:
    root = site_packages()
    freed = removed_size(build_and_test_files(root)) + removed_size(unused_data(root))
    strip_shared_objects(root)
    print(f"pruned {freed / 1e6:.1f} MB from {root}, shared objects stripped")


def precompile() -> None:
    if not sys.dont_write_bytecode:
        sys.exit("run precompile with PYTHONDONTWRITEBYTECODE=1")
    for name in ENTRY_MODULES:
        importlib.import_module(name)
    prefix = str(Path(sys.prefix).resolve())
    files = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    sources = {Path(file).resolve() for file in files if file and file.endswith(".py")}
    ours = sorted(path for path in sources if str(path).startswith(prefix))
    # Hash-checked: valid whatever mtimes the copy into the runtime stage gives the sources.
    for path in ours:
        py_compile.compile(
            str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
    print(f"precompiled {len(ours)} modules the entry points import")


if __name__ == "__main__":
    commands = {"prune": prune, "precompile": precompile}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(commands)}}}")
    commands[sys.argv[1]]()
