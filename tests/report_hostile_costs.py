"""Prints what each hostile page class costs the crawler (time, peak memory, outcome) as the
Markdown rows of docs/reliability.md:

    .venv/bin/python -m tests.report_hostile_costs [-k WORD]
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import aclosing

from tests.address_oracle import LoopbackOnlySockets
from tests.crawler_costs import fetch_costed, hostile_crawler, warm_up
from tests.hostile_pages import hostile_server
from tests.test_crawler_hostile import HOSTILE


async def report(selected: str) -> None:
    with hostile_server() as server:
        async with aclosing(hostile_crawler(LoopbackOnlySockets())) as crawler:
            await warm_up(crawler, server.reserve())
            for name, (build, _) in HOSTILE.items():
                if selected.lower() not in name.lower():
                    continue
                cost = await fetch_costed(crawler, build(server))
                outcome = "read" if cost.page else cost.reason
                print(
                    f"| {name} | {outcome[:90]} | {cost.seconds:.2f} s "
                    f"| {cost.peak_bytes / 1024:,.0f} KiB |"
                )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", default="", help="only the classes whose name contains this")
    asyncio.run(report(parser.parse_args().k))


if __name__ == "__main__":
    main()
