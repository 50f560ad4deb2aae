"""The real-model ring: a published Qwen GGUF, pulled as a user pulls it, served for real.

Qwen2.5-Coder-0.5B-Instruct in the Q4_K_M file its authors publish (Q5_0, Q8_0, Q4_K and Q6_K
tensors, which OpenVINO GenAI's own GGUF reader refuses) is pulled by its quantization label
through the loopback Hub stand-in with the CLI, converted to compressed OpenVINO IR, then served
and used through the official clients. The file comes from the package index
(`tests/support/real_models.py`), cached outside the repository.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import jsonschema
import ollama
import openai
import pytest
from tokenizers import Tokenizer

from tests.support import real_models, reference_tokenizer
from tests.support.cli import run_cli
from tests.support.hub_server import HubStandIn
from tests.support.server import ServerProcess

MODEL = "qwen-coder-0.5b"
GGUF = real_models.QWEN_CODER_05B
CAPITAL = "What is the capital of France? Answer in one sentence."
CODE = "Write a Python function is_prime(n) that tells whether n is a prime number."
WEATHER = "What is the weather like in Paris right now?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
MARKUP = ("<tool_call>", "</tool_call>", "<tool_response>", "<|im_start|>", "<|im_end|>")


@pytest.fixture(scope="module")
def qwen_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    gguf = real_models.fetch(GGUF)
    repo = tmp_path_factory.mktemp("hub-repo")
    (repo / GGUF.filename).symlink_to(gguf)
    (repo / "README.md").write_text("Qwen2.5-Coder-0.5B-Instruct GGUF\n")
    store = tmp_path_factory.mktemp("qwen-store")
    with HubStandIn({GGUF.repo: repo}) as hub:
        pulled = run_cli("models", "pull", f"{GGUF.repo}:Q4_K_M", "--name", MODEL,
                         "--hf-endpoint", hub.endpoint, "--store-dir", str(store), timeout=900)  # fmt: skip
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        assert hub.downloads == [GGUF.filename]
    assert "converting" in pulled.stderr  # the progress bar
    process = ServerProcess(store, "--model", MODEL, "--preload").wait_ready(timeout=300)
    yield process
    process.stop()


@pytest.fixture
def qwen(qwen_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused", max_retries=0)


def test_the_pulled_gguf_is_stored_as_compressed_ir(qwen_server: ServerProcess) -> None:
    manifest = json.loads((qwen_server.store_dir / "models" / MODEL / "manifest.json").read_text())
    assert manifest["format"] == "openvino-ir"
    assert manifest["source_format"] == "gguf"
    assert manifest["quantization"] == "MOSTLY_Q4_K_M"
    assert manifest["context_window"] == 32768
    files = {p.name for p in (qwen_server.store_dir / "models" / MODEL / "model").iterdir()}
    assert {"openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml",
            "openvino_detokenizer.xml", "config.json"} <= files  # fmt: skip
    assert not any(name.endswith(".gguf") for name in files)


def test_answers_are_coherent(qwen: openai.OpenAI) -> None:
    answer = qwen.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": CAPITAL}], temperature=0, max_tokens=40
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    assert answer.choices[0].finish_reason == "stop"
    code = qwen.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": CODE}], temperature=0, max_tokens=200
    )
    text = code.choices[0].message.content or ""
    assert "def is_prime" in text and "return" in text


def test_a_stream_equals_the_whole_answer(qwen: openai.OpenAI) -> None:
    request = {"model": MODEL, "messages": [{"role": "user", "content": CODE}],
               "temperature": 0, "max_tokens": 60}  # fmt: skip
    whole = qwen.chat.completions.create(**request).choices[0].message.content
    pieces = [c.choices[0].delta.content or "" for c in
              qwen.chat.completions.create(**request, stream=True) if c.choices]  # fmt: skip
    assert len(pieces) > 5
    assert "".join(pieces) == whole


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_a_tool_call_in_qwens_own_format(qwen: openai.OpenAI, choice: str) -> None:
    answer = qwen.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": WEATHER}], tools=[WEATHER_TOOL],
        tool_choice=choice, temperature=0, max_tokens=120,
    )  # fmt: skip
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and len(message.tool_calls) >= 1
    call = message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "paris" in json.loads(call.function.arguments)["city"].lower()
    assert not any(m in (message.content or "") for m in MARKUP)


def test_a_streamed_tool_call(qwen: openai.OpenAI) -> None:
    stream = qwen.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": WEATHER}], tools=[WEATHER_TOOL],
        temperature=0, max_tokens=120, stream=True,
    )  # fmt: skip
    name, arguments, content, finish = "", "", "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert name == "get_weather" and "Paris" in json.loads(arguments)["city"]
    assert not any(m in content for m in MARKUP)


def test_a_whole_tool_loop_answers_from_the_tools_result(qwen: openai.OpenAI) -> None:
    messages: list[dict] = [{"role": "user", "content": WEATHER}]
    first = qwen.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL],
                                         temperature=0, max_tokens=120)  # fmt: skip
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id,
                  "content": "It is sunny and 17 degrees Celsius in Paris."}]  # fmt: skip
    # After the result, `none`: a 0.5B model offered the tool again calls it again.
    final = qwen.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL],
                                         tool_choice="none", temperature=0, max_tokens=80)  # fmt: skip
    text = final.choices[0].message.content or ""
    assert final.choices[0].finish_reason == "stop"
    assert "17" in text
    assert not any(m in text for m in MARKUP)


def test_json_schema_output(qwen: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"},
              "country": {"type": "string"}}, "required": ["name", "country"]}  # fmt: skip
    answer = qwen.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=80,
        messages=[{"role": "user", "content": "Describe Paris as JSON: its name and country."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "city", "schema": schema}},
    )  # fmt: skip
    value = json.loads(answer.choices[0].message.content or "")
    jsonschema.validate(value, schema)
    assert value["country"] == "France"


def test_the_responses_api(qwen: openai.OpenAI) -> None:
    response = qwen.responses.create(model=MODEL, input=CAPITAL, temperature=0,
                                     max_output_tokens=40)  # fmt: skip
    assert "Paris" in response.output_text


def test_the_anthropic_and_ollama_routes(qwen_server: ServerProcess) -> None:
    client = anthropic.Anthropic(base_url=qwen_server.base_url, api_key="unused", max_retries=0)
    message = client.messages.create(model=MODEL, max_tokens=40, extra_body={"temperature": 0},
                                     messages=[{"role": "user", "content": CAPITAL}])  # fmt: skip
    assert "Paris" in message.content[0].text  # type: ignore[union-attr]
    answer = ollama.Client(host=qwen_server.base_url).chat(
        model=MODEL, messages=[{"role": "user", "content": CAPITAL}],
        options={"temperature": 0, "num_predict": 40},
    )  # fmt: skip
    assert "Paris" in answer.message.content


def test_the_store_lists_what_the_model_became(qwen_server: ServerProcess) -> None:
    listed = run_cli("models", "list", "--json", "--store-dir", str(qwen_server.store_dir))
    (row,) = [r for r in json.loads(listed.stdout) if r["id"] == MODEL]
    assert row["weight_format"] == "auto" and row["source"].endswith(GGUF.filename)
    assert Path(row["source"]).name == GGUF.filename


# -- long prompts: every token reaches the model, and the window is each dialect's error ------

ACCESS_CODE = "7431"
SYSTEM = "You are a helpful assistant."
QUESTION = "\n\nWhat is the access code stated in the first line? Answer with the number only."
WINDOW = 32768
# The chat template's own tokens around a system and a user message (Qwen's: three turn
# openers, two closers, the role names and newlines).
TEMPLATE_OVERHEAD = range(17)
_WORDS = ("river mountain garden window library morning lantern harbor meadow orchard village "
          "teacher painter sailor baker farmer quietly slowly brightly gently carefully walked "
          "watched carried painted opened gathered followed remembered noticed").split()  # fmt: skip


def filler(sentences: int, seed: int = 7) -> str:
    """Prose with no digits, so the access code is said once, on the first line."""
    rng = random.Random(seed)
    return " ".join(
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 14))).capitalize() + "."
        for _ in range(sentences)
    )


@pytest.fixture(scope="module")
def reference() -> Tokenizer:
    """Qwen's tokenizer rebuilt from the GGUF's vocabulary, with no OpenVINO in it."""
    return reference_tokenizer.from_gguf(real_models.fetch(GGUF))


def test_a_20k_token_prompt_is_answered_from_its_first_line_in_every_dialect(
    qwen: openai.OpenAI, qwen_server: ServerProcess, reference: Tokenizer
) -> None:
    """The GGUF reader's tokenizer kept only the last 8,192 tokens: the first line, and the
    code on it, never reached the model. The three answers share one prefill (the cache)."""
    user = f"The access code is {ACCESS_CODE}.\n" + filler(1600) + QUESTION
    expected = reference_tokenizer.count(reference, SYSTEM) + reference_tokenizer.count(
        reference, user
    )
    assert expected >= 20_000
    chat = qwen.chat.completions.create(model=MODEL, temperature=0, max_tokens=12, messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])  # fmt: skip
    assert chat.usage is not None and chat.usage.prompt_tokens - expected in TEMPLATE_OVERHEAD
    assert ACCESS_CODE in (chat.choices[0].message.content or "")
    prompt_tokens = chat.usage.prompt_tokens

    response = qwen.responses.create(model=MODEL, instructions=SYSTEM, input=user,
                                     temperature=0, max_output_tokens=12)  # fmt: skip
    assert response.usage is not None and response.usage.input_tokens == prompt_tokens
    assert ACCESS_CODE in response.output_text

    claude = anthropic.Anthropic(base_url=qwen_server.base_url, api_key="unused", max_retries=0)
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": user}]
    counted = claude.messages.count_tokens(model=MODEL, system=SYSTEM, messages=messages)
    assert counted.input_tokens == prompt_tokens
    message = claude.messages.create(model=MODEL, system=SYSTEM, messages=messages,
                                     max_tokens=12, extra_body={"temperature": 0})  # fmt: skip
    assert message.usage.input_tokens == prompt_tokens
    assert ACCESS_CODE in message.content[0].text  # type: ignore[union-attr]


def test_a_client_that_hangs_up_during_a_long_prefill_cancels_it(
    qwen_server: ServerProcess,
) -> None:
    """No response has begun while a 20,000-token prompt is read (half a minute or more on
    two cores), so only the connection tells that the client is gone. Assumed: the engine
    drops the request at its next step, well within 10 s of the hang-up."""
    body = {"model": MODEL, "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": filler(1600, seed=23)}]}  # fmt: skip
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("POST", f"{qwen_server.base_url}/v1/chat/completions", json=body,
                          timeout=3.0) as response:  # fmt: skip
            response.read()
    qwen_server.wait_idle(timeout=10.0)


def test_one_token_over_the_window_is_each_dialects_context_error(
    qwen: openai.OpenAI, qwen_server: ServerProcess
) -> None:
    """Refused on its token count, before any prefill, in the words each client parses."""
    claude = anthropic.Anthropic(base_url=qwen_server.base_url, api_key="unused", max_retries=0)
    text = filler(2400, seed=11)

    def tokens(candidate: str) -> int:
        return claude.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": candidate}]
        ).input_tokens

    # " river" is one token: pad the text to exactly one token over the window.
    text += " river" * (WINDOW + 1 - tokens(text))
    assert tokens(text) == WINDOW + 1
    assert qwen.models.retrieve(MODEL).model_extra["context_window"] == WINDOW  # type: ignore[index]
    messages = [{"role": "user", "content": text}]
    with pytest.raises(openai.BadRequestError) as chat:
        qwen.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert chat.value.code == "context_length_exceeded"
    assert f"maximum context length is {WINDOW} tokens" in chat.value.message
    assert f"resulted in {WINDOW + 1} tokens" in chat.value.message
    with pytest.raises(openai.BadRequestError) as responses:
        qwen.responses.create(model=MODEL, input=text)
    assert responses.value.code == "context_length_exceeded"
    assert f"resulted in {WINDOW + 1} tokens" in responses.value.message
    with pytest.raises(anthropic.BadRequestError) as too_long:
        claude.messages.create(model=MODEL, max_tokens=16, messages=messages)  # type: ignore[arg-type]
    assert too_long.value.body["error"]["message"] == (  # type: ignore[index]
        f"prompt is too long: {WINDOW + 1} tokens > {WINDOW} maximum"
    )
    with pytest.raises(ollama.ResponseError) as ollama_error:
        ollama.Client(host=qwen_server.base_url).chat(model=MODEL, messages=messages)
    assert ollama_error.value.status_code == 400
    assert ollama_error.value.error.startswith("the input length exceeds the context length")
    # Claude Code's first request: a prompt that fits and max_tokens 32,000, beyond the room
    # it leaves (streamed, as Claude Code sends it): answered, the window bounding the answer.
    short = [{"role": "user", "content": "Say hello."}]
    with claude.messages.stream(model=MODEL, max_tokens=32_000, messages=short) as stream:  # type: ignore[arg-type]
        answer = stream.get_final_message()
    assert answer.stop_reason == "end_turn" and answer.content
