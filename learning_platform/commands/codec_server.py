"""Entry point: the codec server the Temporal UI and CLI decrypt payloads through.

    learning-jobs codec-server            # serves on CODEC_SERVER_HOST:CODEC_SERVER_PORT

    temporal workflow show -w session-42 \\
        --codec-endpoint http://localhost:8234 --codec-auth "Bearer $CODEC_SERVER_TOKEN"

Needs PAYLOAD_CODEC_KEYS and CODEC_SERVER_TOKEN (docs/privacy.md).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvicorn

from learning_platform.commands.arguments import CommandParser
from learning_platform.commands.process_exit import reports_operator_errors
from learning_platform.core.logs import configure_logging
from learning_platform.core.settings import get_settings
from learning_platform.temporal.codec_server import CodecServerConfigError, create_codec_app
from learning_platform.temporal.payload_codec import PayloadCodecError

log = logging.getLogger("codec_server")


@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    CommandParser(
        prog="learning-jobs codec-server", description=__doc__.splitlines()[0]
    ).parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        app = create_codec_app(settings)
    except (CodecServerConfigError, PayloadCodecError) as exc:
        sys.exit(f"codec server: {exc}")
    log.info(
        "codec server starting",
        extra={"host": settings.codec_server_host, "port": settings.codec_server_port},
    )
    uvicorn.run(
        app, host=settings.codec_server_host, port=settings.codec_server_port, log_config=None
    )
