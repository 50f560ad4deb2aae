"""The app in-process on the tiny model with the real engines: worker jobs, 421s and 503s,
seen through plain HTTP and the official SDK (over starlette's TestClient)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.engines import model_files
from ovrunner.settings import Settings
from ovrunner.store import ModelStore

TINY = "tiny"


def make_client(tmp_path: Path, tiny_gguf: Path, **settings: object) -> TestClient:
    store = ModelStore(tmp_path)
    if TINY not in store.list_ids():
        store.add(tiny_gguf, TINY, engine="openvino", source="test",
                  context_window=lambda ref: model_files.describe(ref).context_window)  # fmt: skip
    return TestClient(create_app(Settings(store_dir=tmp_path, model=TINY, **settings)))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("app"), tiny_gguf, npu_device="CPU") as client:
        yield client


def sdk(client: TestClient, prefix: str = "/v1", retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://testserver{prefix}", api_key="unused",
                         http_client=client, max_retries=retries)  # fmt: skip


def test_a_worker_job_reports_a_positive_busy_delta(client: TestClient) -> None:
    response = client.post("/exp/v1/worker/generate", json={"job": "title", "input": "hello world"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == TINY and body["device"] == "CPU" and body["job"] == "title"
    assert body["busy_counter"] == "process_cpu_time_us"
    assert body["busy_delta_us"] == body["busy_after_us"] - body["busy_before_us"] > 0
    assert "npu_busy_delta_us" not in body
    assert set(body["timing_ms"]) == {"load", "initial_load", "generate", "total"}


class FrozenCounter:
    name = "process_cpu_time_us"

    def read_us(self) -> int:
        return 42


def test_a_counter_that_did_not_move_is_a_503_with_the_payload(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ovrunner.routes.worker.counter_for", lambda *args: FrozenCounter())
    response = client.post("/v1/worker/generate", json={"job": "summary", "input": "hello"})
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    body = response.json()
    assert body["busy_delta_us"] == 0 and "text" in body and body["job"] == "summary"
    assert body["error"]["code"] == "busy_counter_not_moved"
    assert body["error"]["type"] == "server_error"


def test_the_npu_engine_serves_its_model_and_answers_421_for_others(client: TestClient) -> None:
    npu = sdk(client, "/engines/openvino-npu/v1")
    answer = npu.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}],
                                         max_tokens=4)  # fmt: skip
    assert answer.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.APIStatusError) as caught:
        npu.chat.completions.create(model="smollm2-135m", max_tokens=4,
                                    messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert caught.value.status_code == 421
    assert caught.value.code == "model_not_served"
    assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_the_npu_engine_caps_new_tokens(client: TestClient) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(client, "/engines/openvino-npu/v1").chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "hi"}], max_tokens=300
        )
    assert caught.value.body["param"] == "max_tokens"  # type: ignore[index]


def test_an_unknown_engine_is_a_404(client: TestClient) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(client, "/engines/nope/v1").chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "engine_not_found"


def test_a_runner_for_one_model_answers_421_for_others(tmp_path: Path, tiny_gguf: Path) -> None:
    with make_client(tmp_path, tiny_gguf, only=True) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(client).completions.create(model="smollm2-135m", prompt="hi", max_tokens=2)
        assert caught.value.status_code == 421 and caught.value.code == "model_not_served"


def test_an_absent_npu_is_a_503_the_sdk_does_not_retry(tmp_path: Path, tiny_gguf: Path) -> None:
    with make_client(tmp_path, tiny_gguf, npu_device="NPU") as client:
        requests = 0

        def count(request: object) -> None:
            nonlocal requests
            requests += 1

        client.event_hooks["request"].append(count)
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(client, "/engines/openvino-npu/v1", retries=2).chat.completions.create(
                model=TINY, messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 503 and caught.value.code == "engine_unavailable"
        assert "NPU" in caught.value.message
        assert requests == 1  # x-should-retry: false stopped the SDK's retries
        status = {e["name"]: e for e in client.get("/engines/status").json()["engines"]}
        assert status["openvino-npu"]["status"] == "error"
        assert client.get("/healthz").json()["ok"] is True
