"""Stored Responses answers outlive the server: a restart keeps them, and a SIGKILL in the
middle of stored answers loses none that a client had received whole."""

from __future__ import annotations

import threading
from pathlib import Path

import openai
import pytest
from openai.types.responses import Response

from tests.support.cli import store_with_tiny
from tests.support.server import ServerProcess


def client_of(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)


def streamed_answer(client: openai.OpenAI, **request: object) -> Response:
    """The answer a stream ends with (the tiny model's answers often end at the length cap:
    `response.incomplete`, which the SDK's helper does not take as an end)."""
    with client.responses.stream(**request) as stream:  # type: ignore[call-overload]
        for event in stream:
            if event.type in ("response.completed", "response.incomplete"):
                return event.response
    raise AssertionError("the stream ended without its answer")


def serve(store: Path) -> ServerProcess:
    return ServerProcess(store, "--model", "tiny", "--preload").wait_ready()


def test_a_restart_keeps_stored_answers_and_their_conversation(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> None:
    store = store_with_tiny(tmp_path_factory.mktemp("durable-store"), tiny_gguf)
    first = serve(store)
    client = client_of(first)
    whole = client.responses.create(model="tiny", input="hello", max_output_tokens=12)
    streamed = streamed_answer(client, model="tiny", input="more", max_output_tokens=12,
                               previous_response_id=whole.id)  # fmt: skip
    first.process.kill()  # no shutdown at all: what was returned must be on disk already
    first.process.wait()
    first.stop()

    second = serve(store)
    try:
        client = client_of(second)
        assert client.responses.retrieve(whole.id).output_text == whole.output_text
        assert client.responses.retrieve(streamed.id).output_text == streamed.output_text
        items = client.responses.input_items.list(streamed.id, order="asc").data
        assert [item.type for item in items][:2] == ["message", "message"]  # hello, its answer
        after = client.responses.create(model="tiny", input="again", max_output_tokens=4,
                                        previous_response_id=streamed.id)  # fmt: skip
        assert after.usage.input_tokens > streamed.usage.input_tokens
    finally:
        second.stop()


def test_a_sigkill_among_stored_answers_loses_none_that_was_returned(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> None:
    store = store_with_tiny(tmp_path_factory.mktemp("killed-store"), tiny_gguf)
    server = serve(store)
    client = client_of(server)
    received: list[Response] = []
    first_done = threading.Event()

    def ask(i: int) -> None:
        try:
            received.append(streamed_answer(client, model="tiny", input=f"story {i}",
                                            max_output_tokens=40 + 20 * i))  # fmt: skip
            first_done.set()
        except Exception:  # noqa: BLE001 - the SDK's error or its HTTP library's, cut by the kill
            pass  # nothing was returned whole

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    assert first_done.wait(60)
    server.process.kill()
    for thread in threads:
        thread.join(30)
    server.stop()
    assert received, "no answer finished before the kill"

    restarted = serve(store)
    try:
        client = client_of(restarted)
        for answer in received:
            assert client.responses.retrieve(answer.id).output_text == answer.output_text
    finally:
        restarted.stop()
