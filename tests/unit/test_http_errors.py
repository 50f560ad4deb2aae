"""Every error is OpenAI-shaped, with the status and code SPEC.md gives it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.errors import InvalidValueError
from ovrunner.settings import Settings
from ovrunner.store import ModelStore, validate_model_id

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(store_dir=tmp_path)), base_url="http://localhost"
    ) as client:
        yield client


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/nowhere", 404, "not_found"), ("DELETE", "/healthz", 405, "method_not_allowed"),
     ("GET", "/v1/chat/completions", 405, "method_not_allowed")],
)  # fmt: skip
def test_unknown_routes_and_methods(
    client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    ("body", "param"),
    [({"messages": [{"role": "user", "content": "hi"}]}, "model"),
     ({"model": "m"}, "messages"),
     ({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
     ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
     ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 9}, "n"),
     ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
     ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": 5}, "stop"),
     ({"model": "m", "messages": [{"role": "user", "content": "hi"}],
       "logit_bias": {"2": -100}}, "logit_bias")],
)  # fmt: skip
def test_invalid_fields_are_400_naming_the_param(
    client: TestClient, body: dict, param: str
) -> None:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b"\xff\xfe", b"null"])
def test_bodies_that_are_not_a_json_object(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/chat/completions", content=raw, headers=JSON)
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(client: TestClient, value: str) -> None:
    raw = '{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": %s}'
    response = client.post("/v1/chat/completions", content=(raw % value).encode(), headers=JSON)
    assert response.status_code == 400
    assert error_of(response)["param"] == "temperature"


def test_unknown_model_is_404(client: TestClient) -> None:
    response = client.post("/v1/chat/completions",
                           json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
    assert client.get("/v1/models/nope").status_code == 404


@pytest.mark.parametrize("model_id", ["../etc", "/abs", "a/b/c", "", "a" * 200, "x/../y"])
def test_model_ids_never_become_paths(model_id: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError):
        validate_model_id(model_id)
    with pytest.raises(InvalidValueError):
        ModelStore(tmp_path).get(model_id)


def test_the_access_log_escapes_paths(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="ovrunner.access"):
        client.get("/v1/models/evil%0AINFO%20forged%20line")
    lines = [r.getMessage() for r in caplog.records if r.name == "ovrunner.access"]
    assert lines == ["GET /v1/models/evil%0AINFO%20forged%20line 404 " + lines[0].split(" 404 ")[1]]
