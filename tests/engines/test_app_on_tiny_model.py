"""The app in-process on the tiny model with the real engines: worker jobs, 421s and 503s,
seen through plain HTTP and the official SDK (over starlette's TestClient)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.engines import model_files
from ovrunner.engines.openvino.batching import OpenVINOEngine
from ovrunner.settings import Settings
from ovrunner.store import ModelStore

TINY = "tiny"


def make_client(tmp_path: Path, tiny_gguf: Path, **settings: object) -> TestClient:
    store = ModelStore(tmp_path)
    if TINY not in store.list_ids():
        store.add(tiny_gguf, TINY, engine="openvino", source="test",
                  context_window=lambda ref: model_files.describe(ref).context_window)  # fmt: skip
    return TestClient(
        create_app(Settings(store_dir=tmp_path, model=TINY, **settings)),
        base_url="http://localhost",
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("app"), tiny_gguf, npu_device="CPU") as client:
        yield client


def sdk(client: TestClient, prefix: str = "/v1", retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://localhost{prefix}", api_key="unused",
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
        assert status["openvino"]["disk_usage_bytes"] == OpenVINOEngine().disk_usage() > 0
        assert client.get("/healthz").json()["ok"] is True


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}  # fmt: skip


def test_metrics_count_tokens_and_requests(client: TestClient) -> None:
    before = scrape(client)
    answer = client.post("/v1/chat/completions", json={
        "model": TINY, "messages": [{"role": "user", "content": "count"}], "max_tokens": 5,
        "ignore_eos": True,
    }).json()  # fmt: skip
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("ovrunner_generated_tokens_total", model=TINY) == 5
    assert grew("ovrunner_prompt_tokens_total", model=TINY) == answer["usage"]["prompt_tokens"]
    assert grew("ovrunner_requests_total", route="/v1/chat/completions", status="200") == 1
    assert grew("ovrunner_time_to_first_token_seconds_count", model=TINY) == 1
    assert after[("ovrunner_loaded_runners", (("state", "ready"),))] >= 1
    assert after[("ovrunner_busy_counter_microseconds", (("counter", "process_cpu_time_us"),))] > 0
    assert after[("ovrunner_model_load_seconds_count", (("model", TINY),))] >= 1
    # What an operator reads of the engine: waits, the gaps between tokens, the KV cache.
    assert grew("ovrunner_queue_wait_seconds_count", model=TINY) == 1
    # Per token, whether the five arrived one by one or together: four gaps, none negative.
    assert grew("ovrunner_inter_token_latency_seconds_count", model=TINY) == 4
    assert grew("ovrunner_inter_token_latency_seconds_sum", model=TINY) >= 0
    runner = (("decoding", "plain"), ("model", TINY))
    assert after[("ovrunner_kv_cache_bytes", runner)] > 0
    assert 0 <= after[("ovrunner_kv_cache_usage_ratio", runner)] <= 1


def test_ps_shows_keep_alive_and_memory(client: TestClient) -> None:
    client.post("/v1/completions", json={"model": TINY, "prompt": "a", "max_tokens": 1,
                                         "keep_alive": "10m"})  # fmt: skip
    runner = next(r for r in client.get("/engines/ps").json()["runners"]
                  if r["model"] == TINY and r["engine"] == "openvino")  # fmt: skip
    assert runner["state"] == "ready" and runner["keep_alive_s"] == 600
    assert runner["expires_at"] > runner["since"] and runner["memory_bytes"] > 0
    # What it holds: the weights it loaded, the KV cache its pipeline reserved, its process.
    holds = runner["holds"]
    assert holds["weights_bytes"] == runner["memory_bytes"]
    assert holds["kv_cache_bytes"] == runner["stats"]["kv_cache_bytes"] > 0
    assert holds["process_resident_bytes"] > 50 * 2**20  # up and measured: OpenVINO alone is more
    metrics = client.get("/metrics").text
    assert f'ovrunner_runner_resident_bytes{{decoding="plain",engine="openvino",model="{TINY}"}}' \
        in metrics  # fmt: skip


def test_store_routes(client: TestClient, tiny_gguf: Path) -> None:
    listed = {m["id"]: m for m in client.get("/models").json()["models"]}
    assert listed[TINY]["context_window"] == 512 and listed[TINY]["size_bytes"] > 0
    imported = client.post("/models/import", json={"path": str(tiny_gguf), "name": "copy"})
    assert imported.status_code == 201 and imported.json()["format"] == "openvino-ir"
    assert imported.json()["source_format"] == "gguf" and imported.json()["weight_format"] == "auto"
    again = client.post("/models/import", json={"path": str(tiny_gguf), "name": "copy"})
    assert again.status_code == 400
    assert "copy" in [m.id for m in sdk(client).models.list().data]
    described = {m["id"]: m for m in client.get("/models").json()["models"]}["copy"]
    assert described["context_window"] == 512 and described["loaded"] is False
    # Describing read the model's config only: no runner was loaded for it.
    assert "copy" not in [r["model"] for r in client.get("/engines/ps").json()["runners"]]
    client.post("/v1/completions", json={"model": "copy", "prompt": "a", "max_tokens": 1})
    deleted = client.delete("/v1/models/copy").json()
    assert deleted == {"id": "copy", "object": "model", "deleted": True}
    assert "copy" not in [r["model"] for r in client.get("/engines/ps").json()["runners"]]
    assert client.delete("/models/copy").status_code == 404
    bad = client.post("/models/import", json={"path": "/etc/hostname", "name": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "path"


def test_an_import_streams_its_conversion_and_ends_with_the_model(
    client: TestClient, tiny_gguf: Path
) -> None:
    with client.stream("POST", "/models/import", json={"path": str(tiny_gguf), "name": "streamed",
                                                       "stream": True, "weight_format": "int4"}) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    stages = [line.get("stage") for line in lines[:-1]]
    assert stages[0] == "dequantize" and stages[-1] == "done"
    assert lines[0]["status"].startswith("converting: reading weights 1/")
    assert lines[-1]["status"] == "success"
    assert lines[-1]["model"]["id"] == "streamed" and lines[-1]["model"]["weight_format"] == "int4"
    answer = client.post("/v1/completions", json={"model": "streamed", "prompt": "a",
                                                  "max_tokens": 2})  # fmt: skip
    assert answer.status_code == 200
    client.delete("/models/streamed")


def test_an_unsupported_model_is_a_400_at_import_even_streamed(
    client: TestClient, tmp_path: Path
) -> None:
    import gguf

    path = tmp_path / "gemma.gguf"
    writer = gguf.GGUFWriter(path, "gemma3")
    writer.add_context_length(64)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for stream in (False, True):
        refused = client.post("/models/import", json={"path": str(path), "name": "g",
                                                      "stream": stream})  # fmt: skip
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "unsupported_model" and "gemma3" in error["message"]
    assert "g" not in [m["id"] for m in client.get("/models").json()["models"]]
