"""The spine through a real server: the official SDK and plain HTTP against SmolLM2."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.integration.conftest import MODEL
from tests.support.cli import run_cli
from tests.support.server import ServerProcess

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_list_has_the_embedded_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert MODEL in [m.id for m in models.data]
    model = next(m for m in models.data if m.id == MODEL)
    assert model.object == "model" and model.owned_by
    # The window the server holds prompts to, under its own name and vLLM's.
    assert model.model_extra is not None
    assert model.model_extra["context_window"] == model.model_extra["max_model_len"] == 8192


def test_plain_chat_completion_answers_coherently(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=CAPITAL, max_tokens=32, temperature=0
    )
    choice = completion.choices[0]
    assert "Paris" in (choice.message.content or "")
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 10
    assert 0 < completion.usage.completion_tokens <= 32
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_streamed_chat_completion(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=CAPITAL, max_tokens=32, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    # Streamed and plain give the same greedy text.
    plain = client.chat.completions.create(
        model=MODEL, messages=CAPITAL, max_tokens=32, temperature=0
    )
    assert plain.choices[0].message.content == text


ONE_TOKEN_PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_one_token_answer_leaves_the_next_greedy_answer_unchanged(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    """OpenVINO's prefix cache, after a request that ends at its first token, changed the next
    greedy answer to the same prompt; the engine pads such requests (engine_main)."""

    def greedy() -> str | None:
        return client.chat.completions.create(model=MODEL, messages=ONE_TOKEN_PROMPT,
                                              temperature=0, max_tokens=40).choices[0].message.content  # fmt: skip

    before = greedy()
    for options in ({"temperature": 0}, {}):
        one = client.chat.completions.create(model=MODEL, messages=ONE_TOKEN_PROMPT,
                                             max_tokens=1, **options)  # type: ignore[call-overload]  # fmt: skip
        assert one.choices[0].finish_reason == "length" and one.usage.completion_tokens == 1
        assert greedy() == before
    server.wait_idle(timeout=5)


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=CAPITAL)
    assert caught.value.code == "model_not_found"
    assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_garbage_is_a_400_and_the_server_stays_healthy(server: ServerProcess) -> None:
    response = httpx.post(f"{server.base_url}/v1/chat/completions", content=b"{not json",
                          headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    response = httpx.post(f"{server.base_url}/v1/chat/completions",
                          json={"model": MODEL, "messages": CAPITAL, "temperature": 7})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"
    response = httpx.get(f"{server.base_url}/no/such/route")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{server.base_url}/healthz").json()["ok"] is True


def test_closing_a_stream_frees_the_request(client: openai.OpenAI, server: ServerProcess) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me a very long story."}],
        max_tokens=2000, stream=True, extra_body={"ignore_eos": True},
    )  # fmt: skip
    for i, _ in enumerate(stream):
        if i == 1:  # two chunks read
            break
    stream.close()
    server.wait_idle(timeout=1.0)  # the request left the pipeline within a second
    after = client.chat.completions.create(model=MODEL, messages=CAPITAL, max_tokens=8)
    assert after.choices[0].message.content


def test_healthz_reports_the_loaded_default_model(server: ServerProcess) -> None:
    health = httpx.get(f"{server.base_url}/healthz").json()
    assert health["ok"] is True and health["model"] == MODEL and health["loaded"] is True
    assert health["initial_load_ms"] > 0
    assert health["bind"] == f"127.0.0.1:{server.port}"


def test_raw_completion_is_not_templated(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    completion = client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0)
    assert completion.object == "text_completion"
    assert completion.choices[0].text
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage is not None and completion.usage.completion_tokens <= 5
    # The chat template would add dozens of tokens (system prompt, role markers).
    assert completion.usage.prompt_tokens <= 8
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=1, temperature=0
    )
    assert chat.usage is not None and chat.usage.prompt_tokens > completion.usage.prompt_tokens + 10


def test_streamed_completion(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    plain = client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0
    )
    assert text == plain.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_status_and_ps_commands(server: ServerProcess) -> None:
    import json
    import subprocess

    def ovrunner(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--url", server.base_url, timeout=60)

    status = ovrunner("status")
    assert status.returncode == 0 and "openvino" in status.stdout and "running" in status.stdout
    runners = json.loads(ovrunner("ps", "--json").stdout)
    # The plain runner; a prompt-lookup one only once a summary job (another test) asked.
    plain = [(r["model"], r["state"]) for r in runners if r["decoding"] == "plain"]
    assert plain == [(MODEL, "ready")], runners
    assert {r["decoding"] for r in runners} <= {"plain", "prompt_lookup"}
    assert "smollm2-135m" in ovrunner("ps").stdout


def test_serve_refuses_a_public_bind_without_a_key(tmp_path: Path) -> None:
    done = run_cli("serve", "--host", "0.0.0.0", "--port", "0", "--store-dir", str(tmp_path),
                   timeout=60)  # fmt: skip
    assert done.returncode != 0 and "API key" in done.stderr
