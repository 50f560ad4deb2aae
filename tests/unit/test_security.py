"""Access and input limits: the API key, the bind check and the body cap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.errors import OvrunnerError
from ovrunner.security import check_bind, encoder_body_bytes, is_loopback
from ovrunner.settings import Settings

JSON = {"Content-Type": "application/json"}

KEY = "s3cret-key"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(store_dir=tmp_path, api_key=KEY, max_body_bytes=4096)  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://localhost") as client:
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
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert client.get("/v1/models").status_code == 401
        assert (
            client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        )


def test_metrics_open_lets_a_keyless_scraper_read_metrics_and_nothing_else(tmp_path: Path) -> None:
    settings = Settings(store_dir=tmp_path, api_key=KEY, metrics_open=True)  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/v1/models").status_code == 401
        assert client.get("/engines/ps").status_code == 401


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_a_large_body_is_a_413(client: TestClient) -> None:
    body = b'{"model": "smollm2-135m", "prompt": "' + b"x" * 5000 + b'"}'
    response = client.post("/v1/completions", content=body, headers={**auth(), **JSON})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_large_chunked_body_is_a_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "smollm2-135m", "prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/v1/completions", content=chunks(), headers={**auth(), **JSON})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_request_within_the_embedding_bounds_never_meets_the_generic_cap(
    tmp_path: Path,
) -> None:
    """2,048 inputs of ~100 tokens each (within `embedding_max_inputs` and `_tokens`) make a
    body of about 1.4 MiB: past the 1 MiB generic cap, within the encoder routes' own."""
    settings = Settings(store_dir=tmp_path)
    inputs = ["The quick brown fox jumps over the lazy dog; " * 15] * 2048
    body = json.dumps({"model": "no-such-model", "input": inputs}).encode()
    assert len(body) > settings.max_body_bytes
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        for path in ("/v1/embeddings", "/engines/openvino/v1/embeddings", "/api/embed"):
            response = client.post(path, content=body, headers=JSON)
            assert response.status_code == 404, path  # read whole, then: no such model
        chat = json.dumps({"model": "no-such-model", "prompt": inputs}).encode()
        assert client.post("/v1/completions", content=chat, headers=JSON).status_code == 413
        beyond = b'{"input": "' + b"x" * (encoder_body_bytes(2048, 300_000) + 1) + b'"}'
        assert client.post("/v1/embeddings", content=beyond, headers=JSON).status_code == 413


def test_deep_json_is_a_400(client: TestClient) -> None:
    body = b'{"model": "m", "messages": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    response = client.post("/v1/chat/completions", content=body, headers={**auth(), **JSON})
    assert response.status_code == 400


def test_too_many_messages_is_a_400(tmp_path: Path) -> None:
    with TestClient(
        create_app(Settings(store_dir=tmp_path)), base_url="http://localhost"
    ) as client:
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


# -- requests from web pages the user visits ---------------------------------------------------


@pytest.fixture
def keyless(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(store_dir=tmp_path, allowed_hosts=["ovrunner.lan"])
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield client


ROUTES = [("GET", "/healthz"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
          ("POST", "/v1/completions"), ("GET", "/engines/ps"), ("GET", "/metrics"),
          ("POST", "/exp/v1/worker/generate"), ("GET", "/no/such/route")]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_foreign_host_is_a_403_on_every_route(keyless: TestClient, method: str,
                                                path: str) -> None:  # fmt: skip
    """DNS rebinding: a hostile name resolving to 127.0.0.1 arrives as its own Host."""
    response = keyless.request(method, path, headers={"Host": "attacker.example"}, json={})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "host_not_allowed"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("host", ["localhost", "localhost:18820", "127.0.0.1:9", "[::1]:18820",
                                  "ovrunner.lan", "ovrunner.lan:80", "app.localhost"])  # fmt: skip
def test_loopback_and_allowlisted_hosts_pass(keyless: TestClient, host: str) -> None:
    assert keyless.get("/healthz", headers={"Host": host}).status_code == 200


def test_with_a_key_the_key_is_the_guard(client: TestClient) -> None:
    response = client.get("/v1/models", headers={**auth(), "Host": "ovrunner.example"})
    assert response.status_code == 200


CHAT = '{"model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])  # fmt: skip
def test_a_body_not_sent_as_json_is_a_415(keyless: TestClient, content_type: str | None) -> None:
    """A cross-site form can POST text/plain shaped like JSON without a preflight."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = keyless.post("/v1/chat/completions", content=CHAT, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_no_cors_by_default_and_allowlisted_origins_get_it(tmp_path: Path) -> None:
    origin = {"Origin": "http://evil.example"}
    with TestClient(create_app(Settings(store_dir=tmp_path)), base_url="http://localhost") as c:
        assert "access-control-allow-origin" not in c.get("/v1/models", headers=origin).headers
    settings = Settings(store_dir=tmp_path, cors_origins=["http://app.example"])
    with TestClient(create_app(settings), base_url="http://localhost") as c:
        allowed = c.get("/v1/models", headers={"Origin": "http://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "http://app.example"
        assert "access-control-allow-origin" not in c.get("/v1/models", headers=origin).headers
