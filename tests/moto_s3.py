"""An S3-compatible server on loopback (moto's server mode), for storage tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aioboto3
from moto.server import ThreadedMotoServer

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@contextmanager
def s3_server(port: int = 0) -> Iterator[str]:
    """Serve on loopback (`port` 0: a free one); yield the endpoint URL. Servers of one
    process share their buckets."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def create_bucket(endpoint: str, bucket: str) -> None:
    session = aioboto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    async with session.client("s3", endpoint_url=endpoint, region_name=REGION) as s3:
        await s3.create_bucket(Bucket=bucket)
