"""Access and input limits: the API key, the bind check and the body cap."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.errors import OvrunnerError
from ovrunner.security import check_bind, is_loopback
from ovrunner.settings import Settings

KEY = "s3cret-key"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(store_dir=tmp_path, api_key=KEY, max_body_bytes=4096)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_routes_need_the_key(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                         ("GET", "/metrics"), ("GET", "/engines/ps"), ("GET", "/nowhere")]:  # fmt: skip
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, path
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")


def test_the_key_opens_them_and_healthz_is_open(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200


def test_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    settings = Settings(store_dir=tmp_path, api_key_file=tmp_path / "key")
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_a_large_body_is_a_413(client: TestClient) -> None:
    body = b'{"model": "smollm2-135m", "prompt": "' + b"x" * 5000 + b'"}'
    response = client.post("/v1/completions", content=body, headers=auth())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_large_chunked_body_is_a_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "smollm2-135m", "prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/v1/completions", content=chunks(), headers=auth())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_deep_json_is_a_400(client: TestClient) -> None:
    body = b'{"model": "m", "messages": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    response = client.post("/v1/chat/completions", content=body, headers=auth())
    assert response.status_code == 400


def test_too_many_messages_is_a_400(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(store_dir=tmp_path))) as client:
        messages = [{"role": "user", "content": "x"}] * 1025
        response = client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
        assert response.status_code == 400 and response.json()["error"]["param"] == "messages"


def test_loopback_detection_and_the_bind_check() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "::1", "localhost", "127.1.2.3"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.5", "::", "example.com"]))
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(OvrunnerError, match="API key"):
        check_bind("0.0.0.0", None)


def test_serve_refuses_a_public_bind_without_a_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ovrunner.cli", "serve", "--host", "0.0.0.0", "--port", "0",
         "--store-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "API key" in done.stderr
