"""The gauges a router scrapes by name (the Gateway API Inference Extension's model server
protocol, vLLM's names) read right under load, parsed with prometheus_client's own parser."""

from __future__ import annotations

import threading
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ServerProcess

GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")


def scrape(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in GAUGES and sample.labels.get("model_name") == "tiny":
                values[sample.name] = sample.value
    return values


def test_router_gauges_follow_the_load(tiny_server: ServerProcess) -> None:
    def stream() -> None:
        httpx.post(f"{tiny_server.base_url}/v1/completions", timeout=120,
                   json={"model": "tiny", "prompt": "the sea " * 40, "max_tokens": 300,
                         "ignore_eos": True})  # fmt: skip

    streams = [threading.Thread(target=stream) for _ in range(6)]
    for thread in streams:
        thread.start()
    seen: list[dict[str, float]] = []
    deadline = time.monotonic() + 60
    while any(t.is_alive() for t in streams) and time.monotonic() < deadline:
        seen.append(scrape(tiny_server))
        time.sleep(0.1)
    for thread in streams:
        thread.join(60)
    assert all(set(s) == set(GAUGES) for s in seen)
    assert max(s["vllm:num_requests_running"] for s in seen) >= 1
    # The share of the KV cache in use: moved, and a ratio (OpenVINO reports percent).
    usage = [s["vllm:kv_cache_usage_perc"] for s in seen]
    assert max(usage) > 0 and all(0 <= u <= 1 for u in usage)
    idle = scrape(tiny_server)
    deadline = time.monotonic() + 10
    while idle["vllm:num_requests_running"] + idle["vllm:num_requests_waiting"] > 0:
        assert time.monotonic() < deadline, idle
        time.sleep(0.1)
        idle = scrape(tiny_server)
