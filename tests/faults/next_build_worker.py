"""`python -m tests.faults.next_build_worker`: the production worker (`worker.py`, same
settings and wiring) registering the next build's workflows instead of today's (s8)."""

from __future__ import annotations

import worker
from tests.faults.next_build_workflows import NEXT_BUILD_WORKFLOWS

if __name__ == "__main__":
    worker.ALL_WORKFLOWS = NEXT_BUILD_WORKFLOWS
    worker.main()
