"""The codec server over HTTP (uvicorn on loopback): bearer and cookie authentication, the
namespace check, CORS limited to the UI's origin, bounded bad input; and the real `temporal`
CLI decoding a history through it."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings
from learning_platform.dev.embedded_temporal import start_dev_server, temporal_cli_path
from learning_platform.jobs.ai_processing.contracts import ProcessSessionInput, ProcessSessionResult
from learning_platform.temporal.codec_server import (
    MAX_BODY_BYTES,
    CodecServerConfigError,
    create_codec_app,
)
from learning_platform.temporal.payload_codec import ENCODING, data_converter, new_key
from tests.codec_keys import TEST_CODEC_KEYS, encrypting_converter
from tests.loopback import serve_in_thread
from workflows.ai_processing import ProcessSession

TOKEN = "codec-test-token-" + uuid.uuid4().hex
UI_ORIGIN = "http://localhost:8233"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}


def codec_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "payload_codec_keys": TEST_CODEC_KEYS,
        "codec_server_token": SecretStr(TOKEN),
        "codec_server_cors_origins": [UI_ORIGIN],
        "temporal_namespace": "default",
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="module")
def codec_url() -> Iterator[str]:
    with serve_in_thread(create_codec_app(codec_settings())) as url:
        yield url


def body(payloads: list[Payload]) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def parsed(response: httpx.Response) -> list[Payload]:
    message = Payloads()
    json_format.Parse(response.text, message)
    return list(message.payloads)


async def encrypted(value: object) -> Payload:
    return (await encrypting_converter().encode([value]))[0]


async def test_decode_gives_back_the_plain_payload(codec_url: str) -> None:
    secret = await encrypted({"url": "https://private.example/"})
    async with httpx.AsyncClient(base_url=codec_url) as http:
        response = await http.post("/decode", content=body([secret]), headers=AUTH)
    assert response.status_code == 200, response.text
    (plain,) = parsed(response)
    assert plain.metadata["encoding"] == b"json/plain"
    assert json.loads(plain.data) == {"url": "https://private.example/"}


async def test_encode_then_decode_round_trips(codec_url: str) -> None:
    (plain,) = await DataConverter.default.encode(["hello"])
    async with httpx.AsyncClient(base_url=codec_url) as http:
        (sealed,) = parsed(await http.post("/encode", content=body([plain]), headers=AUTH))
        (back,) = parsed(await http.post("/decode", content=body([sealed]), headers=AUTH))
    assert sealed.metadata["encoding"] == ENCODING
    assert back == plain


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Cookie": "x=1"}],
    ids=["none", "wrong token", "no scheme", "other cookie"],
)
async def test_requests_without_the_token_are_refused(
    codec_url: str, headers: dict[str, str]
) -> None:
    secret = await encrypted("private")
    async with httpx.AsyncClient(base_url=codec_url) as http:
        response = await http.post("/decode", content=body([secret]), headers=headers)
    assert response.status_code == 401
    assert "private" not in response.text and TOKEN not in response.text


async def test_another_namespace_is_refused(codec_url: str) -> None:
    async with httpx.AsyncClient(base_url=codec_url) as http:
        response = await http.post(
            "/decode", content=body([]), headers=AUTH | {"X-Namespace": "someone-else"}
        )
    assert response.status_code == 403
    assert "'default'" in response.text


async def test_the_login_cookie_authenticates_and_does_not_hold_the_token(codec_url: str) -> None:
    secret = await encrypted("via cookie")
    async with httpx.AsyncClient(base_url=codec_url) as http:
        refused = await http.post("/login", data={"token": "wrong"})
        signed_in = await http.post("/login", data={"token": TOKEN})
        response = await http.post("/decode", content=body([secret]))  # the cookie, no header
    assert refused.status_code == 401
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    assert response.status_code == 200
    assert json.loads(parsed(response)[0].data) == "via cookie"


async def test_cors_lets_only_the_ui_origin_call_it(codec_url: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with httpx.AsyncClient(base_url=codec_url) as http:
        ui = await http.options("/decode", headers=preflight | {"Origin": UI_ORIGIN})
        other = await http.options(
            "/decode", headers=preflight | {"Origin": "https://evil.example"}
        )
    assert ui.status_code == 200
    assert ui.headers["access-control-allow-origin"] == UI_ORIGIN
    assert ui.headers["access-control-allow-credentials"] == "true"
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


async def test_bad_bodies_get_a_clear_bounded_error(codec_url: str) -> None:
    async with httpx.AsyncClient(base_url=codec_url) as http:
        not_json = await http.post("/decode", content="{", headers=AUTH)
        huge = await http.post("/decode", content=b" " * (MAX_BODY_BYTES + 1), headers=AUTH)
    assert not_json.status_code == 400 and '{"payloads": [...]}' in not_json.text
    assert huge.status_code == 413


async def test_a_payload_under_an_unknown_key_names_the_key_id(codec_url: str) -> None:
    other = Settings(payload_codec_keys=SecretStr(json.dumps({"retired-2025": new_key()})))
    (sealed,) = await data_converter(other).encode(["old"])
    async with httpx.AsyncClient(base_url=codec_url) as http:
        response = await http.post("/decode", content=body([sealed]), headers=AUTH)
    assert response.status_code == 422
    assert "'retired-2025'" in response.text


def test_it_refuses_to_start_without_a_token_or_keys() -> None:
    with pytest.raises(CodecServerConfigError, match="CODEC_SERVER_TOKEN"):
        create_codec_app(codec_settings(codec_server_token=None))
    with pytest.raises(CodecServerConfigError, match="PAYLOAD_CODEC_KEYS"):
        create_codec_app(codec_settings(payload_codec_keys=None))


async def test_the_temporal_cli_shows_a_history_decoded_through_it(
    client: Client, worker: Worker, settings: Settings
) -> None:
    workflow_id = f"codec-cli-{uuid.uuid4().hex[:8]}"
    result = await client.execute_workflow(
        ProcessSession.run,
        ProcessSessionInput(session_id=987_654_321),  # no such session: skipped
        id=workflow_id,
        task_queue=worker.task_queue,
        result_type=ProcessSessionResult,
    )
    assert result.outcome == "skipped"
    app = create_codec_app(codec_settings(temporal_namespace=client.namespace))
    with serve_in_thread(app) as codec_url:
        plain = await show(client, workflow_id)
        decoded = await show(
            client, workflow_id, "--codec-endpoint", codec_url, "--codec-auth", f"Bearer {TOKEN}"
        )
        refused = await show(client, workflow_id, "--codec-endpoint", codec_url, check=False)
    assert started_input(plain)["metadata"]["encoding"] == b64(ENCODING)
    decoded_input = started_input(decoded)
    assert decoded_input["metadata"]["encoding"] == b64(b"json/plain")
    assert json.loads(base64.b64decode(decoded_input["data"])) == {"session_id": 987_654_321}
    assert b64(b"987654321") not in refused and "987654321" not in refused


def started_input(shown: str) -> dict[str, Any]:
    """The workflow input in `temporal workflow show -o json` output."""
    first = json.loads(shown)["events"][0]
    payload: dict[str, Any] = first["workflowExecutionStartedEventAttributes"]["input"]["payloads"][
        0
    ]
    return payload


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def show(client: Client, workflow_id: str, *args: str, check: bool = True) -> str:
    process = await asyncio.create_subprocess_exec(
        temporal_cli_path(), "workflow", "show", "--workflow-id", workflow_id, "--output", "json",
        "--address", client.service_client.config.target_host,
        "--namespace", client.namespace, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    if check and process.returncode != 0:
        raise AssertionError(f"temporal workflow show failed: {err.decode()}")
    return out.decode() + err.decode()


def test_the_dev_server_ui_is_wired_to_the_codec_server(tmp_path: Path) -> None:
    """What `make dev` starts with the codec on: the UI's settings name the codec endpoint."""
    ui_port = free_loopback_port()
    server = start_dev_server(
        tmp_path,
        port=free_loopback_port(),
        ui_port=ui_port,
        ui_codec_endpoint="http://localhost:8234",
    )
    try:
        ui_settings = ui_settings_when_up(f"http://127.0.0.1:{ui_port}/api/v1/settings")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert ui_settings["Codec"]["Endpoint"] == "http://localhost:8234"


def ui_settings_when_up(url: str) -> dict[str, Any]:
    """The UI answers shortly after the frontend port: poll it, bounded."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return dict(httpx.get(url, timeout=2).json())
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
