"""Encoders are isolated like chat: their pipeline runs in a process of its own, so its death
(here SIGKILL during a batch of embedding requests) costs no request and never the server."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cli import store_with_tiny
from tests.support.server import ServerProcess

EMBEDDER = "all-minilm-l6-v2"
STORY = [{"role": "user", "content": "Tell me a long story."}]


def encoder_stats(server: ServerProcess) -> dict:  # type: ignore[type-arg]
    runners = httpx.get(f"{server.base_url}/engines/ps", timeout=10).json()["runners"]
    return next(r for r in runners if r["model"] == EMBEDDER)["stats"]


def test_a_killed_encoder_process_costs_no_request(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> None:
    store = store_with_tiny(tmp_path_factory.mktemp("encoder-crash"), tiny_gguf)
    server = ServerProcess(store, "--model", "tiny", "--preload").wait_ready()
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
        client.embeddings.create(model=EMBEDDER, input=["warm up"])
        before = encoder_stats(server)
        assert before["engine_pid"] not in (None, server.process.pid)
        streamed: list[str] = []
        finish: list[str | None] = []

        def chat() -> None:
            stream = client.chat.completions.create(
                model="tiny", messages=STORY, max_tokens=200, stream=True,
                extra_body={"ignore_eos": True}, stream_options={"include_usage": True},
            )  # fmt: skip
            for chunk in stream:
                if chunk.choices:
                    streamed.append(chunk.choices[0].delta.content or "")
                    finish.append(chunk.choices[0].finish_reason)
                elif chunk.usage is not None:
                    streamed.append(f"<usage {chunk.usage.completion_tokens}>")

        def embed(i: int) -> int:
            texts = [f"sentence {i}.{j} about the sea and the wind" for j in range(48)]
            answer = client.embeddings.create(model=EMBEDDER, input=texts)
            assert all(len(d.embedding) == 384 for d in answer.data)
            return len(answer.data)

        chatting = threading.Thread(target=chat)
        chatting.start()
        with ThreadPoolExecutor(8) as pool:
            answers = [pool.submit(embed, i) for i in range(24)]
            deadline = time.monotonic() + 30
            while encoder_stats(server)["calls"] <= before["calls"]:  # a batch is in the pipeline
                assert time.monotonic() < deadline
                time.sleep(0.005)
            os.kill(before["engine_pid"], signal.SIGKILL)
            assert [a.result(timeout=120) for a in answers] == [48] * 24
        chatting.join(120)
        after = encoder_stats(server)
        assert after["restarts"] == 1 and after["engine_pid"] != before["engine_pid"]
        assert [f for f in finish if f] == ["length"] and streamed[-1] == "<usage 200>"
        assert server.process.poll() is None  # the server lived through it, same pid
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
