"""Anthropic's Messages API on a real server, through the official `anthropic` SDK."""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import pytest

from tests.integration.conftest import MODEL
from tests.support.server import ServerProcess

GREEDY = {"temperature": 0}  # newer SDKs send sampling fields through extra_body
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {"name": "get_weather", "description": "Get the current weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}  # fmt: skip


@pytest.fixture
def claude(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0)


def test_create_answers_with_text_stop_reason_and_usage(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL, max_tokens=40, messages=CAPITAL, extra_body=GREEDY
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert "Paris" in message.content[0].text
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 10 and 0 < message.usage.output_tokens < 40
    cut = claude.messages.create(model=MODEL, max_tokens=3, messages=CAPITAL, extra_body=GREEDY)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    for system in (
        "Answer in one sentence.",
        [{"type": "text", "text": "Answer in one sentence."}],
    ):
        briefed = claude.messages.create(model=MODEL, max_tokens=1, messages=CAPITAL, system=system)
        assert briefed.usage.input_tokens != message.usage.input_tokens  # the system prompt went in


def test_a_stop_sequence_is_reported_and_cut_off(claude: anthropic.Anthropic) -> None:
    for stream in (False, True):
        request = dict(model=MODEL, max_tokens=40, messages=CAPITAL, stop_sequences=["Paris"],
                       extra_body=GREEDY)  # fmt: skip
        if stream:
            with claude.messages.stream(**request) as events:  # type: ignore[arg-type]
                text = "".join(events.text_stream)
                message = events.get_final_message()
        else:
            message = claude.messages.create(**request)  # type: ignore[call-overload]
            text = message.content[0].text
        assert message.stop_reason == "stop_sequence" and message.stop_sequence == "Paris"
        assert "Paris" not in text and "France" in text  # cut right before the stop


def test_stream_events_come_in_order_and_join_to_the_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=MODEL, max_tokens=30, messages=CAPITAL,
                                extra_body=GREEDY) as events:  # fmt: skip
        kinds = [event.type for event in events]
        final = events.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.index("content_block_start") < kinds.index("content_block_stop")
    assert "message_delta" in kinds and "text" in kinds
    whole = claude.messages.create(model=MODEL, max_tokens=30, messages=CAPITAL, extra_body=GREEDY)
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_count_tokens_matches_what_a_message_uses(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model=MODEL, messages=CAPITAL)
    used = claude.messages.create(model=MODEL, max_tokens=1, messages=CAPITAL)
    assert counted.input_tokens == used.usage.input_tokens
    with_tools = claude.messages.count_tokens(model=MODEL, messages=CAPITAL, tools=[WEATHER])
    assert with_tools.input_tokens > counted.input_tokens + 50


def test_tool_use_and_tool_result_round_trip(claude: anthropic.Anthropic) -> None:
    messages: list = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = claude.messages.create(model=MODEL, max_tokens=80, messages=messages,
                                     tools=[WEATHER], tool_choice={"type": "any"},
                                     extra_body=GREEDY)  # fmt: skip
    assert message.stop_reason == "tool_use"
    [use] = [b for b in message.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    jsonschema.validate(use.input, WEATHER["input_schema"])
    messages += [{"role": "assistant", "content": message.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "Sunny, 21 C"}]}]  # fmt: skip
    final = claude.messages.create(model=MODEL, max_tokens=30, messages=messages, tools=[WEATHER],
                                   extra_body=GREEDY)  # fmt: skip
    assert final.usage.input_tokens > message.usage.input_tokens
    with claude.messages.stream(model=MODEL, max_tokens=80, messages=messages[:1], tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather"},
                                extra_body=GREEDY) as events:  # fmt: skip
        streamed = events.get_final_message()
    [use] = [b for b in streamed.content if b.type == "tool_use"]
    assert streamed.stop_reason == "tool_use" and use.name == "get_weather"
    jsonschema.validate(use.input, WEATHER["input_schema"])


def test_structured_output_follows_the_schema(claude: anthropic.Anthropic) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    message = claude.messages.create(
        model=MODEL, max_tokens=60, messages=CAPITAL, extra_body=GREEDY,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )  # fmt: skip
    jsonschema.validate(json.loads(message.content[0].text), schema)


def test_what_claude_code_sends_to_a_model_that_is_not_claude(claude: anthropic.Anthropic) -> None:
    """System turns inside `messages`, adaptive thinking, a tool description of many
    kilobytes, and `?beta=true`: each was a 400 before."""
    workflow = {**WEATHER, "name": "Workflow", "description": "Runs a workflow. " * 1200}
    assert len(workflow["description"]) > 18_000
    messages = [*CAPITAL, {"role": "assistant", "content": "Paris."},
                {"role": "system", "content": "<system-reminder>Answer briefly.</system-reminder>"},
                {"role": "user", "content": "And of Italy?"}]  # fmt: skip
    for thinking in ({"type": "adaptive"}, {"type": "enabled", "budget_tokens": 1024},
                     {"type": "disabled"}):  # fmt: skip
        message = claude.messages.create(
            model=MODEL, max_tokens=8, messages=messages, tools=[workflow],  # type: ignore[arg-type]
            thinking=thinking, system="You are a coding agent.",  # type: ignore[arg-type]
            extra_body=GREEDY, extra_query={"beta": "true"},
        )  # fmt: skip
        assert message.usage.input_tokens > 4000 and message.stop_reason in (
            "max_tokens",
            "end_turn",
        )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": MODEL, "messages": CAPITAL}, 400),  # max_tokens is required
        ({"model": MODEL, "max_tokens": "many", "messages": CAPITAL}, 400),
        ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "tool", "content": "x"}]}, 400),
        ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "system", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "x"}]}]}, 400),
        ({"model": MODEL, "max_tokens": 8, "messages": CAPITAL, "temperature": 1.5}, 400),
        ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "data": ""}}]}]}, 400),
        ({"model": MODEL, "max_tokens": 8, "messages": CAPITAL, "tools": [WEATHER],
          "tool_choice": {"type": "tool", "name": "nope"}}, 400),
        ({"model": "no-such-model", "max_tokens": 8, "messages": CAPITAL}, 404),
    ],
)  # fmt: skip
def test_malformed_input_is_a_4xx_in_anthropic_shape(server: ServerProcess, body: dict,
                                                     status: int) -> None:  # fmt: skip
    response = httpx.post(f"{server.base_url}/v1/messages", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["message"]
    assert error["error"]["type"] == (
        "not_found_error" if status == 404 else "invalid_request_error"
    )
    with pytest.raises(anthropic.APIStatusError):  # and the SDK raises on it
        anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0).post(
            "/v1/messages", body=body, cast_to=object)  # fmt: skip


def test_a_disconnect_frees_the_request(claude: anthropic.Anthropic, server: ServerProcess) -> None:
    with claude.messages.stream(model=MODEL, max_tokens=2000, extra_body={"ignore_eos": True},
                                messages=[{"role": "user", "content": "Tell a long story."}]) as events:  # fmt: skip
        for i, _ in enumerate(events.text_stream):
            if i == 2:
                break
    server.wait_idle(timeout=1.0)  # the request left the pipeline within a second
