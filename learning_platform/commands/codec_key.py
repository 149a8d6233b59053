"""`learning-jobs codec-key`: print a new payload codec key (base64 of 32 random bytes)."""

from __future__ import annotations

from collections.abc import Sequence

from learning_platform.commands.arguments import CommandParser
from learning_platform.commands.process_exit import reports_operator_errors
from learning_platform.temporal.payload_codec import new_key


@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    CommandParser(prog="learning-jobs codec-key", description=__doc__).parse_args(argv)
    print(new_key())
