"""Failure injection: an engine error mid-stream ends that stream only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from ovrunner.app import create_app
from ovrunner.engines.openvino.batching import OpenVINOEngine
from ovrunner.engines.registry import EngineRegistry
from ovrunner.settings import Settings
from ovrunner.store import ModelStore
from tests.support.fake_engine import FAIL, FakeEngine


def events(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]


def test_a_failing_stream_ends_with_the_error_and_done_and_others_finish(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    ModelStore(tmp_path).add(tiny_gguf, "fake", engine="fake", source="test",
                             context_window=lambda _: 512)  # fmt: skip
    app = create_app(Settings(store_dir=tmp_path), EngineRegistry([OpenVINOEngine(), FakeEngine()]))

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:

            def chat(text: str):  # type: ignore[no-untyped-def]
                return client.post("/v1/chat/completions", json={
                    "model": "fake", "stream": True,
                    "messages": [{"role": "user", "content": text}]})  # fmt: skip

            responses = await asyncio.gather(chat("fine"), chat(FAIL), chat("also fine"))
            responses.append(await client.get("/engines/ps"))
            return list(responses)

    fine, failed, also_fine, ps = asyncio.run(scenario())
    for response in (fine, also_fine):
        data = events(response.text)
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == (
            "t0 t1 t2 t3 t4 t5 "
        )
    data = events(failed.text)
    assert failed.status_code == 200  # the stream had begun when the engine failed
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert error["message"] == "injected failure" and error["type"] == "server_error"
    assert [r["stats"]["running"] for r in ps.json()["runners"]] == [0]


def test_the_sdk_sees_each_failure_as_its_exception(tmp_path: Path, tiny_gguf: Path) -> None:
    import openai
    from starlette.testclient import TestClient

    ModelStore(tmp_path).add(tiny_gguf, "fake", engine="fake", source="test",
                             context_window=lambda _: 512)  # fmt: skip
    settings = Settings(store_dir=tmp_path, api_key="k", max_body_bytes=2048)  # type: ignore[arg-type]
    app = create_app(settings, EngineRegistry([OpenVINOEngine(), FakeEngine()]))
    with TestClient(app, base_url="http://localhost") as http:

        def sdk(key: str = "k") -> openai.OpenAI:
            return openai.OpenAI(base_url="http://localhost/v1", api_key=key,
                                 http_client=http, max_retries=0)  # fmt: skip

        failing = [{"role": "user", "content": FAIL}]
        with pytest.raises(openai.AuthenticationError) as auth:
            sdk("wrong").models.list()
        assert auth.value.status_code == 401 and auth.value.code == "invalid_api_key"
        with pytest.raises(openai.APIStatusError) as large:
            sdk().completions.create(model="fake", prompt="x" * 4000)
        assert large.value.status_code == 413 and large.value.code == "request_too_large"
        with pytest.raises(openai.InternalServerError) as failed:
            sdk().chat.completions.create(model="fake", messages=failing)
        assert failed.value.status_code == 500 and failed.value.code == "engine_error"
        with pytest.raises(openai.APIError, match="injected failure"):
            for _ in sdk().chat.completions.create(model="fake", messages=failing, stream=True):
                pass
        assert sdk().chat.completions.create(model="fake", messages=[
            {"role": "user", "content": "fine"}]).choices[0].finish_reason == "length"  # fmt: skip
