"""What each fault scenario injected and verified: printed as it happens (`pytest -s`), and
kept as one row per scenario in the results table of docs/reliability.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

RELIABILITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
TABLE_START = "<!-- fault results: start (written by tests/faults; do not edit by hand) -->"
TABLE_END = "<!-- fault results: end -->"
HEADER = (
    "| scenario | injected fault | invariant verified | result | measured |\n|---|---|---|---|---|"
)


@dataclass
class FaultReport:
    scenario: str
    injections: list[str] = field(default_factory=list)
    verifications: list[str] = field(default_factory=list)
    measurements: list[str] = field(default_factory=list)
    outcome: str = "not run"

    finished: ClassVar[list[FaultReport]] = []

    def injected(self, what: str) -> None:
        self.injections.append(what)
        print(f"\n[fault] {self._short}: INJECTED {what}", flush=True)

    def verified(self, what: str) -> None:
        self.verifications.append(what)
        print(f"[fault] {self._short}: VERIFIED {what}", flush=True)

    def measured(self, what: str) -> None:
        self.measurements.append(what)
        print(f"[fault] {self._short}: MEASURED {what}", flush=True)

    def finish(self, outcome: str, failure: str) -> None:
        self.outcome = outcome
        if failure:
            self.measurements.append("failure: " + " ".join(failure.split())[-200:])
        print(f"[fault] {self._short}: {outcome.upper()}", flush=True)
        FaultReport.finished.append(self)

    @property
    def _short(self) -> str:
        return self.scenario.rsplit("::", 1)[-1]

    def row(self) -> str:
        cells = [
            self._short,
            "; ".join(self.injections),
            "; ".join(self.verifications),
            self.outcome,
            "; ".join(self.measurements),
        ]
        return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def _existing_rows(table: str) -> dict[str, str]:
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| (test_\S+) \|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def write_results(reports: list[FaultReport], command: str) -> None:
    """Put this run's rows into the doc's table, keeping rows of scenarios not run now."""
    if not reports or not RELIABILITY_DOC.exists():
        return
    doc = RELIABILITY_DOC.read_text()
    if TABLE_START not in doc or TABLE_END not in doc:
        return
    before, rest = doc.split(TABLE_START, 1)
    table, after = rest.split(TABLE_END, 1)
    rows = _existing_rows(table)
    for report in reports:
        rows[report._short] = report.row()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"\nLast written {stamp} by `.venv/bin/pytest {command}`"
        " (rows of scenarios not in that run are kept from earlier runs).\n\n"
        f"{HEADER}\n" + "\n".join(rows[name] for name in sorted(rows)) + "\n"
    )
    RELIABILITY_DOC.write_text(before + TABLE_START + body + TABLE_END + after)
