"""What the pipeline would fail on is refused with a 400 before admission, and every refused,
cancelled or failed request leaves the runner's lease count where it was (the app in-process
on the tiny model, the real engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ovrunner.engines.openvino.grammar import shared_schema_check
from tests.engines.test_app_on_tiny_model import TINY, make_client

CHAT = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
COMPLETION = {"model": TINY, "prompt": "hi", "max_tokens": 4}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("refusals"), tiny_gguf) as client:
        assert client.post("/v1/completions", json=COMPLETION).status_code == 200  # loaded
        yield client


def in_use(client: TestClient) -> list[int]:
    return [runner["in_use"] for runner in client.get("/engines/ps").json()["runners"]]


def engine_pid(client: TestClient) -> int:
    return client.get("/engines/ps").json()["runners"][0]["stats"]["engine_pid"]


def schema_format(schema: object) -> dict[str, object]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


BAD_SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "nope"}}},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
    {"type": "integer", "minimum": "zero"},
]


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=["unknown type", "dangling ref", "minimum"])
def test_a_schema_the_grammar_compiler_rejects_is_a_400(client: TestClient, schema: object) -> None:
    pid = engine_pid(client)
    response = client.post("/v1/chat/completions",
                           json={**CHAT, "response_format": schema_format(schema)})  # fmt: skip
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "response_format"
    assert "cannot be enforced" in response.json()["error"]["message"]
    assert engine_pid(client) == pid  # the engine never saw it
    assert in_use(client) == [0]


def test_a_repeated_schema_is_compiled_once(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 7}}}
    check = shared_schema_check()
    body = {**CHAT, "max_tokens": 16, "response_format": schema_format(schema)}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    compiles = check.compiles
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert check.compiles == compiles


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/chat/completions", {**CHAT, "seed": 2**64}, "seed"),
        ("/v1/chat/completions", {**CHAT, "seed": -(2**64)}, "seed"),
        ("/v1/completions", {**COMPLETION, "seed": 10**30}, "seed"),
        ("/v1/completions", {**COMPLETION, "top_k": 2**64}, "top_k"),
        ("/v1/completions", {**COMPLETION, "min_tokens": 2**63}, "min_tokens"),
        ("/v1/completions", {**COMPLETION, "max_tokens": 2**70}, "max_tokens"),
        ("/v1/completions", {**COMPLETION, "prompt": ""}, "prompt"),
        ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema"}},
         "response_format"),
        ("/v1/chat/completions", {**CHAT, "n": 2, "temperature": 0}, "n"),
        ("/v1/chat/completions", {**CHAT, "min_tokens": 10**6}, "min_tokens"),  # no room
        ("/v1/chat/completions", {**CHAT, "keep_alive": "soon"}, "keep_alive"),
    ],
)  # fmt: skip
def test_values_the_engine_cannot_take_are_400s_that_take_no_lease(
    client: TestClient, route: str, body: dict[str, object], param: str
) -> None:
    response = client.post(route, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert in_use(client) == [0]


@pytest.mark.parametrize("escape", ["\\ud800", "a\\ud83d", "\\udfff b"])
def test_a_lone_surrogate_is_a_400_naming_the_field(client: TestClient, escape: str) -> None:
    for route, raw, param in [
        ("/v1/completions", f'{{"model": "{TINY}", "prompt": "{escape}"}}', "prompt"),
        ("/v1/chat/completions",
         f'{{"model": "{TINY}", "messages": [{{"role": "user", "content": "{escape}"}}]}}',
         "messages[0].content"),
    ]:  # fmt: skip
        response = client.post(route, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
    assert in_use(client) == [0]


def test_a_surrogate_pair_is_a_character(client: TestClient) -> None:
    raw = json.dumps({"model": TINY, "prompt": "smile \U0001f600", "max_tokens": 2})  # escaped
    assert "\\ud83d\\ude00" in raw
    response = client.post("/v1/completions", content=raw,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 200, response.text


def test_a_seed_is_honoured_across_its_whole_range(client: TestClient) -> None:
    def text(seed: int) -> str:
        body = {**COMPLETION, "max_tokens": 12, "temperature": 1.0, "seed": seed}
        response = client.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["text"]

    for seed in (-(2**63), -1, 2**64 - 1):
        assert text(seed) == text(seed)
    assert text(-1) == text(2**64 - 1)  # a negative seed is its two's complement


def test_streams_closed_early_and_refused_streams_leave_no_lease(client: TestClient) -> None:
    body = {**CHAT, "max_tokens": 300, "stream": True, "ignore_eos": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # hang up after the first chunk
    bad = {**body, "response_format": {"type": "json_schema"}}
    assert client.post("/v1/chat/completions", json=bad).status_code == 400
    worker = client.post("/exp/v1/worker/generate", json={"job": "title", "input": "x" * 7000})
    assert worker.status_code == 400
    assert in_use(client) == [0]
