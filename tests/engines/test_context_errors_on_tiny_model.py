"""A prompt the window cannot hold is each dialect's own context error, before admission,
in the wording its clients parse; a `max_tokens` beyond the room the prompt leaves is bounded
by the window instead (the tiny model's window is 512 tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from starlette.testclient import TestClient

from ovrunner.engines.tiny_model import CONTEXT_LENGTH
from tests.engines.test_app_on_tiny_model import TINY, make_client, sdk

LONG = "hello world " * 400  # about 800 tokens
SHORT = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("context"), tiny_gguf) as client:
        yield client


def claude(client: TestClient) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url="http://localhost", api_key="unused",
                               http_client=client, max_retries=0)  # fmt: skip


def test_openai_routes_say_context_length_exceeded(client: TestClient) -> None:
    openai_client = sdk(client)
    with pytest.raises(openai.BadRequestError) as chat:
        openai_client.chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": LONG}], max_tokens=4
        )
    assert chat.value.code == "context_length_exceeded"
    assert f"maximum context length is {CONTEXT_LENGTH} tokens" in chat.value.message
    # max_tokens beyond the room: the window bounds the answer (llama.cpp's and Ollama's way).
    whole = openai_client.completions.create(model=TINY, prompt="hello", max_tokens=CONTEXT_LENGTH,
                                             extra_body={"ignore_eos": True})  # fmt: skip
    assert whole.choices[0].finish_reason == "length" and whole.usage is not None
    assert whole.usage.prompt_tokens + whole.usage.completion_tokens == CONTEXT_LENGTH
    with pytest.raises(openai.BadRequestError) as at_least:  # what cannot be honoured is refused
        openai_client.completions.create(model=TINY, prompt="hello", max_tokens=8,
                                         extra_body={"min_tokens": CONTEXT_LENGTH})  # fmt: skip
    assert at_least.value.code == "context_length_exceeded"
    assert at_least.value.param == "min_tokens"
    with pytest.raises(openai.BadRequestError) as streamed:  # refused before the stream begins
        openai_client.chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": LONG}], stream=True
        )
    assert streamed.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as responses:
        openai_client.responses.create(model=TINY, input=LONG)
    assert responses.value.code == "context_length_exceeded"


def test_anthropic_says_it_in_its_own_words(client: TestClient) -> None:
    counted = claude(client).messages.count_tokens(
        model=TINY, messages=[{"role": "user", "content": LONG}]
    )
    assert counted.input_tokens > CONTEXT_LENGTH  # every token, not the window's worth
    with pytest.raises(anthropic.BadRequestError) as too_long:
        claude(client).messages.create(model=TINY, max_tokens=8,
                                       messages=[{"role": "user", "content": LONG}])  # fmt: skip
    error = too_long.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == (
        f"prompt is too long: {counted.input_tokens} tokens > {CONTEXT_LENGTH} maximum"
    )
    # Claude Code's max_tokens (32,000) over a small window: answered, bounded by the window.
    with claude(client).messages.stream(model=TINY, max_tokens=32_000, messages=SHORT) as stream:
        answer = stream.get_final_message()
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.usage.input_tokens + answer.usage.output_tokens <= CONTEXT_LENGTH


def test_ollama_says_it_in_its_own_words(client: TestClient) -> None:
    for path, body in (
        ("/api/chat", {"messages": [{"role": "user", "content": LONG}]}),
        ("/api/generate", {"prompt": LONG}),
    ):
        refused = client.post(path, json={"model": TINY, "stream": False, **body})
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("the input length exceeds the context length")
