"""Entry point: the codec server the Temporal UI and CLI decrypt payloads through.

    python codec_server.py            # serves on CODEC_SERVER_HOST:CODEC_SERVER_PORT

    temporal workflow show -w session-42 \\
        --codec-endpoint http://localhost:8234 --codec-auth "Bearer $CODEC_SERVER_TOKEN"

Needs PAYLOAD_CODEC_KEYS and CODEC_SERVER_TOKEN (docs/privacy.md).
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from learning_platform.codec_server import CodecServerConfigError, create_codec_app
from learning_platform.logs import configure_logging
from learning_platform.payload_codec import PayloadCodecError
from learning_platform.settings import get_settings

log = logging.getLogger("codec_server")


def main() -> None:
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


if __name__ == "__main__":
    main()
