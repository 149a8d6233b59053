"""`make bench`: every benchmark in this folder, one after the other, each in its own process.

.venv/bin/python -m bench [NAME ...]     # e.g. python -m bench session_cleanup
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HELPERS = {"__init__", "__main__", "stack"}


def benchmarks() -> list[str]:
    return sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem not in HELPERS)


def main(names: list[str]) -> int:
    failed = []
    for name in names or benchmarks():
        print(f"\n=== bench.{name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
