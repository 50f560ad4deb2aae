"""Tool calls and reasoning on the real engine, with tiny models whose chat templates
know tools (a Qwen-like one) and open a thinking block (a DeepSeek-R1-like one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.engines import model_files
from ovrunner.engines.base import GenerationRequest
from ovrunner.engines.openvino.generation import read_chat_format, render_prompt
from ovrunner.engines.tiny_model import CHAT_TEMPLATE, build_tiny_gguf
from ovrunner.settings import Settings
from ovrunner.store import ModelStore
from ovrunner.tools.spec import FunctionTool, ToolChoice, ToolSpec

# A template that renders `tools` itself, in Qwen's way.
KNOWS_TOOLS = (
    "{% if tools %}{{ '<|im_start|>system\\n# Tools\\n<tools>' }}"
    "{% for tool in tools %}{{ tool | tojson }}{% endfor %}"
    "{{ '</tools>\\nCall with <tool_call>{...}</tool_call><|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}"
    "{{ '<tool_call>' }}{{ call['function'] | tojson }}{{ '</tool_call>' }}{% endfor %}"
    "{% else %}{{ message['content'] }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# One whose generation prompt opens a thinking block, as DeepSeek-R1's does.
THINKS = KNOWS_TOOLS.replace("assistant\\n' }}{% endif %}", "assistant\\n<think>\\n' }}{% endif %}")
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"]}}}  # fmt: skip


def client_for(directory: Path, **settings: object) -> TestClient:
    store = ModelStore(directory / "store")
    for name, template in (("toolsmith", KNOWS_TOOLS), ("thinker", THINKS)):
        gguf = build_tiny_gguf(directory / f"{name}.gguf", chat_template=template)
        store.add(gguf, name, engine="openvino", source="test",
                  context_window=lambda ref: model_files.describe(ref).context_window)  # fmt: skip
    app = create_app(Settings(store_dir=directory / "store", model="thinker", **settings))
    return TestClient(app, base_url="http://localhost")


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    with client_for(tmp_path_factory.mktemp("tiny-tools")) as client:
        yield openai.OpenAI(base_url="http://localhost/v1", api_key="unused", http_client=client,
                            max_retries=0)  # fmt: skip


def test_thinking_cut_short_is_reasoning_never_content(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(model="thinker", max_tokens=12, temperature=0,
                                         extra_body={"ignore_eos": True},
                                         messages=[{"role": "user", "content": "hello"}])  # fmt: skip
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "length"
    assert message.reasoning_content, message  # type: ignore[attr-defined]
    assert not message.content
    streamed = ""
    for chunk in sdk.chat.completions.create(model="thinker", max_tokens=12, temperature=0,
                                             stream=True, extra_body={"ignore_eos": True},
                                             messages=[{"role": "user", "content": "hello"}]):  # fmt: skip
        delta = chunk.choices[0].delta
        assert not delta.content
        streamed += getattr(delta, "reasoning_content", None) or ""
    assert streamed == message.reasoning_content  # type: ignore[attr-defined]


def test_a_template_that_knows_tools_renders_them_itself(tmp_path: Path) -> None:
    import openvino_genai

    gguf = build_tiny_gguf(tmp_path / "toolsmith.gguf", chat_template=KNOWS_TOOLS)
    tokenizer = openvino_genai.Tokenizer(str(gguf))
    chat = read_chat_format(tokenizer)
    assert chat.native_tools and chat.tools.name == "hermes" and chat.reasoning is None
    spec = ToolSpec((FunctionTool("add", parameters=json.dumps(ADD["function"]["parameters"])),))
    messages = [{"role": "user", "content": "1 plus 2"}]
    prompt = render_prompt(tokenizer, GenerationRequest(messages=messages, tools=spec), chat)
    assert "# Tools" in prompt and '"name": "add"' in prompt
    assert "You can call functions" not in prompt  # the fallback's words are not used
    hidden = render_prompt(tokenizer, GenerationRequest(
        messages=messages, tools=ToolSpec(spec.tools, ToolChoice.NONE)), chat)  # fmt: skip
    assert "# Tools" not in hidden


def test_the_grammar_holds_even_a_random_model_to_a_valid_call(sdk: openai.OpenAI) -> None:
    for stream in (False, True):
        request = dict(model="toolsmith", max_tokens=200, temperature=0, tools=[ADD],
                       tool_choice={"type": "function", "function": {"name": "add"}},
                       messages=[{"role": "user", "content": "1 plus 2"}])  # fmt: skip
        if stream:
            arguments = ""
            for chunk in sdk.chat.completions.create(stream=True, **request):  # type: ignore[call-overload]
                for call in chunk.choices[0].delta.tool_calls or []:
                    assert call.index == 0 and call.id is None or call.function.name == "add"
                    arguments += call.function.arguments or ""
        else:
            answer = sdk.chat.completions.create(**request)  # type: ignore[call-overload]
            [call] = answer.choices[0].message.tool_calls or []
            assert call.function.name == "add"
            assert answer.choices[0].finish_reason == "tool_calls"
            arguments = call.function.arguments
        jsonschema.validate(json.loads(arguments), ADD["function"]["parameters"])


def test_inline_reasoning_leaves_the_thinking_in_the_content(tmp_path: Path) -> None:
    with client_for(tmp_path, reasoning_format="inline") as client:
        body = client.post("/v1/chat/completions", json={
            "model": "thinker", "max_tokens": 8, "ignore_eos": True, "temperature": 0,
            "messages": [{"role": "user", "content": "hello"}]}).json()  # fmt: skip
    message = body["choices"][0]["message"]
    assert message["content"] and "reasoning_content" not in message


def test_a_manifest_names_the_tool_family_when_the_template_does_not(tmp_path: Path) -> None:
    import openvino_genai

    from ovrunner.errors import ModelLoadFailedError

    gguf = build_tiny_gguf(tmp_path / "plain.gguf")
    store = ModelStore(tmp_path / "store")
    store.add(gguf, "plain", engine="openvino", source="test",
              context_window=lambda ref: model_files.describe(ref).context_window)  # fmt: skip
    manifest = tmp_path / "store" / "models" / "plain" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "tool_format": "mistral"}))
    ref = store.get("plain")
    tokenizer = openvino_genai.Tokenizer(str(gguf))
    assert read_chat_format(tokenizer).tools.name == "hermes"
    assert read_chat_format(tokenizer, ref.tool_format).tools.name == "mistral"
    with pytest.raises(ModelLoadFailedError):
        read_chat_format(tokenizer, "smoke-signals")


# Qwen 3's switch, in a template of its own: thinking off opens the answer with an empty block.
SWITCHES_THINKING = CHAT_TEMPLATE + (
    "{% if add_generation_prompt and enable_thinking is defined and not enable_thinking %}"
    "<think>\n\n</think>\n\n{% endif %}"
)


def test_the_thinking_switch_reaches_a_template_that_has_one(tmp_path: Path) -> None:
    import openvino_genai

    gguf = build_tiny_gguf(tmp_path / "switch.gguf", chat_template=SWITCHES_THINKING)
    tokenizer = openvino_genai.Tokenizer(str(gguf))
    chat = read_chat_format(tokenizer)
    messages = [{"role": "user", "content": "hello"}]

    def rendered(thinking: bool | None) -> str:
        return render_prompt(tokenizer, GenerationRequest(messages=messages, thinking=thinking),
                             chat)  # fmt: skip

    assert rendered(False).endswith("<think>\n\n</think>\n\n")
    assert "<think>" not in rendered(True) and rendered(None) == rendered(True)


def test_every_dialects_thinking_switch_reaches_the_template(tmp_path: Path) -> None:
    """Seen in the prompt's token count: thinking switched off adds the empty block."""
    store = ModelStore(tmp_path / "store")
    gguf = build_tiny_gguf(tmp_path / "switch.gguf", chat_template=SWITCHES_THINKING)
    store.add(gguf, "switch", engine="openvino", source="test",
              context_window=lambda ref: model_files.describe(ref).context_window)  # fmt: skip
    app = create_app(Settings(store_dir=tmp_path / "store", model="switch"))
    with TestClient(app, base_url="http://localhost") as client:

        def ollama_prompt_tokens(**think: object) -> int:
            answer = client.post("/api/chat", json={
                "model": "switch", "stream": False, "options": {"num_predict": 1},
                "messages": [{"role": "user", "content": "hello"}], **think})  # fmt: skip
            assert answer.status_code == 200, answer.text
            return int(answer.json()["prompt_eval_count"])

        def anthropic_input_tokens(thinking: str) -> int:
            answer = client.post("/v1/messages", json={
                "model": "switch", "max_tokens": 1, "thinking": {"type": thinking},
                "messages": [{"role": "user", "content": "hello"}]})  # fmt: skip
            assert answer.status_code == 200, answer.text
            return int(answer.json()["usage"]["input_tokens"])

        plain = ollama_prompt_tokens()
        assert ollama_prompt_tokens(think=False) > plain
        assert ollama_prompt_tokens(think=True) == ollama_prompt_tokens(think="high") == plain
        assert anthropic_input_tokens("disabled") == ollama_prompt_tokens(think=False)
        assert anthropic_input_tokens("adaptive") == anthropic_input_tokens("enabled") == plain

        def openai_prompt_tokens(**extra: object) -> int:
            answer = client.post("/v1/chat/completions", json={
                "model": "switch", "max_tokens": 1,
                "messages": [{"role": "user", "content": "hello"}], **extra})  # fmt: skip
            assert answer.status_code == 200, answer.text
            return int(answer.json()["usage"]["prompt_tokens"])

        off = ollama_prompt_tokens(think=False)
        assert openai_prompt_tokens(chat_template_kwargs={"enable_thinking": False}) == off
        assert openai_prompt_tokens(reasoning_effort="none") == off
        assert openai_prompt_tokens(reasoning_effort="high") == openai_prompt_tokens() == plain
        for effort, tokens in (("none", off), ("low", plain)):
            answer = client.post("/v1/responses", json={
                "model": "switch", "input": "hello", "max_output_tokens": 1,
                "reasoning": {"effort": effort, "summary": "auto"}})  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert answer.json()["usage"]["input_tokens"] == tokens
        refused = client.post("/v1/chat/completions", json={
            "model": "switch", "messages": [{"role": "user", "content": "hello"}],
            "chat_template_kwargs": {"messages": []}})  # fmt: skip
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "chat_template_kwargs.messages"
