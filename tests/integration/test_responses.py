"""OpenAI's Responses API on a real server, through the official `openai` SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.integration.conftest import MODEL
from tests.support.server import ServerProcess

CAPITAL = "What is the capital of France?"
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}  # fmt: skip


def test_create_answers_with_output_text_and_usage(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input=CAPITAL, temperature=0,
                                       max_output_tokens=40)  # fmt: skip
    assert response.id.startswith("resp_") and response.status == "completed"
    assert "Paris" in response.output_text
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    usage = response.usage
    assert usage and usage.input_tokens > 10 and 0 < usage.output_tokens < 40
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    cut = client.responses.create(model=MODEL, input=CAPITAL, max_output_tokens=3)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


def test_a_stream_sends_the_events_in_order_and_joins_to_the_answer(client: openai.OpenAI) -> None:
    request = dict(model=MODEL, instructions="Answer in one sentence.", temperature=0,
                   max_output_tokens=100,
                   input=[{"role": "user", "content": [{"type": "input_text", "text": CAPITAL}]}])  # fmt: skip
    with client.responses.stream(**request) as stream:  # type: ignore[arg-type]
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    whole = client.responses.create(**request)  # type: ignore[arg-type]
    assert deltas == final.output_text == whole.output_text
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input=CAPITAL, temperature=0, max_output_tokens=40)
    second = client.responses.create(model=MODEL, input="And of Italy?", temperature=0,
                                     previous_response_id=first.id, max_output_tokens=40)  # fmt: skip
    # The first question and its answer went in before the second question.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.output_text
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="more", previous_response_id=first.id)
    unstored = client.responses.create(model=MODEL, input=CAPITAL, store=False, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_a_json_schema_format_is_enforced(client: openai.OpenAI) -> None:
    class City(BaseModel):
        city: str

    parsed = client.responses.parse(model=MODEL, input=CAPITAL, text_format=City, temperature=0,
                                    max_output_tokens=40)  # fmt: skip
    assert isinstance(parsed.output_parsed, City)
    loose = client.responses.create(model=MODEL, input=CAPITAL, max_output_tokens=60,
                                    text={"format": {"type": "json_object"}}, temperature=0)  # fmt: skip
    assert loose.output_text.lstrip().startswith("{")


def test_function_calls_and_their_outputs(client: openai.OpenAI) -> None:
    called = client.responses.create(model=MODEL, input="What is the weather in Paris?",
                                     tools=[WEATHER], tool_choice="required", temperature=0,
                                     max_output_tokens=80)  # fmt: skip
    [call] = [o for o in called.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]
    answered = client.responses.create(
        model=MODEL, previous_response_id=called.id, tools=[WEATHER], temperature=0,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}],
        max_output_tokens=30,
    )  # fmt: skip
    assert answered.usage.input_tokens > called.usage.input_tokens
    with client.responses.stream(model=MODEL, input="Weather in Paris?", tools=[WEATHER],
                                 tool_choice={"type": "function", "name": "get_weather"},
                                 temperature=0, max_output_tokens=80) as stream:  # fmt: skip
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    [call] = [o for o in final.output if o.type == "function_call"]
    assert json.loads(call.arguments)["city"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": CAPITAL}, "model"),
        ({"model": MODEL, "input": 42}, "input"),
        ({"model": MODEL, "input": [{"role": "wizard", "content": "x"}]}, "input[0]"),
        ({"model": MODEL, "input": CAPITAL, "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": MODEL, "input": CAPITAL, "truncation": "auto"}, "truncation"),
        ({"model": MODEL, "input": CAPITAL, "tool_choice": "required"}, "tool_choice"),
        ({"model": MODEL, "input": CAPITAL, "tools": [WEATHER],
          "text": {"format": {"type": "json_object"}}}, "text.format"),
    ],
)  # fmt: skip
def test_malformed_input_is_a_400_in_openai_shape(server: ServerProcess, body: dict,
                                                  param: str) -> None:  # fmt: skip
    response = httpx.post(f"{server.base_url}/v1/responses", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"].startswith(param), error


def test_a_disconnect_frees_the_request(client: openai.OpenAI, server: ServerProcess) -> None:
    with client.responses.stream(model=MODEL, input="Tell a long story.", max_output_tokens=2000,
                                 extra_body={"ignore_eos": True}) as stream:  # fmt: skip
        for i, _ in enumerate(stream):
            if i == 6:
                break
    server.wait_idle(timeout=1.0)  # the request left the pipeline within a second
