"""Tool calling on a real server and SmolLM2, through the clients agents use.

SmolLM2's chat template knows nothing of tools, so these run the fallback prompt and the
`hermes` parser, with every call constrained by the engine's grammar.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from typing import Any

import httpx
import jsonschema
import openai

from tests.integration.conftest import MODEL
from tests.integration.tool_cases import CASES
from tests.support.server import ServerProcess

WEATHER = CASES[0][0]
ADD = CASES[1][0]


def call_schema(tools: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t for t in tools if t["function"]["name"] == name)["function"]["parameters"]


def streamed_calls(chunks: Any) -> tuple[list[tuple[str, str]], str, str | None]:
    """(name, arguments) of each call, the content, and the finish reason of a stream."""
    calls: dict[int, list[str]] = {}
    content, finish = "", None
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for delta in choice.delta.tool_calls or []:
            if delta.id is not None:
                assert delta.type == "function" and delta.function.name
                calls[delta.index] = [delta.function.name, ""]
            calls[delta.index][1] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    return [(n, a) for n, a in (calls[i] for i in sorted(calls))], content, finish


def ask(client: openai.OpenAI, case: int, *, named: bool, stream: bool) -> str:
    """One forced call; its finish reason. Every call that ended validates."""
    tool, prompt = CASES[case]
    others = [t for t, _ in CASES if t is not tool]
    tools = [tool, *others[case % 5 : case % 5 + 2]]
    name = tool["function"]["name"]
    choice: Any = {"type": "function", "function": {"name": name}} if named else "required"
    request = dict(model=MODEL, messages=[{"role": "user", "content": prompt}], tools=tools,
                   tool_choice=choice, temperature=0, max_tokens=160)  # fmt: skip
    if stream:
        calls, content, finish = streamed_calls(
            client.chat.completions.create(stream=True, **request)
        )
    else:
        choice = client.chat.completions.create(**request).choices[0]
        content, finish = choice.message.content or "", choice.finish_reason
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    # `required` and a named function: calls and nothing else. The grammar fixes the shape,
    # not the length of a string argument: a 135M model may loop inside one until
    # `max_tokens`, and whether it does depends on the batch it ran in (greedy decoding is
    # not bit-exact across batch compositions and prefix-cache states).
    assert content == "" and finish in ("tool_calls", "length"), (case, content, finish)
    assert calls, f"case {case}: no call"
    if finish == "length":
        return finish
    for called, arguments in calls:
        if named:
            assert called == name
        jsonschema.validate(json.loads(arguments), call_schema(tools, called))
    return finish


def test_required_and_named_calls_validate_for_twenty_tools(client: openai.OpenAI) -> None:
    runs = [(case, named, stream) for case in range(len(CASES))
            for named in (False, True) for stream in (False, True)]  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        finishes = list(
            pool.map(lambda run: ask(client, run[0], named=run[1], stream=run[2]), runs)
        )
    # Nearly all end by the model, with arguments that validate against their schema.
    assert len(finishes) == 80 and finishes.count("tool_calls") >= 76, finishes


def test_a_named_call_ends_the_answer_streamed_as_whole(client: openai.OpenAI) -> None:
    request = dict(model=MODEL, messages=[{"role": "user", "content": "What is 17 plus 25?"}],
                   tools=[ADD, WEATHER], tool_choice={"type": "function", "function": {"name": "add"}},
                   temperature=0, max_tokens=100)  # fmt: skip
    whole = client.chat.completions.create(**request)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "add"
    jsonschema.validate(json.loads(call.function.arguments), ADD["function"]["parameters"])
    calls, content, finish = streamed_calls(client.chat.completions.create(stream=True, **request))
    assert finish == "tool_calls" and content == ""
    assert [name for name, _ in calls] == ["add"]
    jsonschema.validate(json.loads(calls[0][1]), ADD["function"]["parameters"])


def test_tool_choice_none_never_calls_and_hides_the_tools(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40,
                                           temperature=0)  # fmt: skip
    for _, prompt in CASES[:5]:
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=40,
            tools=[t for t, _ in CASES], tool_choice="none", temperature=0.7, seed=1,
        )  # fmt: skip
        assert answer.choices[0].message.tool_calls is None
        assert answer.choices[0].finish_reason in ("stop", "length")
    hidden = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40,
                                            tools=[WEATHER], tool_choice="none", temperature=0)  # fmt: skip
    offered = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40,
                                             tools=[WEATHER], temperature=0)  # fmt: skip
    assert hidden.usage.prompt_tokens == plain.usage.prompt_tokens
    # `auto` shows the model its tools: they are in the prompt, never dropped.
    assert offered.usage.prompt_tokens > plain.usage.prompt_tokens + 50


def test_a_full_tool_loop_with_the_sdk(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is 17 plus 25?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[ADD],
                                           tool_choice="required", temperature=0, max_tokens=60)  # fmt: skip
    message = first.choices[0].message
    [call] = (message.tool_calls or [])[:1]
    arguments = json.loads(call.function.arguments)
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": str(arguments["a"] + arguments["b"])})  # fmt: skip
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=[ADD],
                                           temperature=0, max_tokens=40)  # fmt: skip
    assert final.usage.prompt_tokens > first.usage.prompt_tokens  # the call and result went in
    assert final.choices[0].message.content or final.choices[0].message.tool_calls


def test_parallel_tool_calls_false_allows_one_call(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Paris and in Rome?"}],
        tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, temperature=0,
        max_tokens=120,
    )  # fmt: skip
    assert len(answer.choices[0].message.tool_calls or []) == 1
    assert answer.choices[0].finish_reason == "tool_calls"


def test_deprecated_functions_map_onto_tools(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Add 2 and 3."}],
            "functions": [ADD["function"]], "function_call": {"name": "add"},
            "temperature": 0, "max_tokens": 60}  # fmt: skip
    answer = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60).json()
    [call] = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "add"
    jsonschema.validate(json.loads(call["function"]["arguments"]), ADD["function"]["parameters"])


BAD_TOOL_REQUESTS = [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "bogus"}}}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": "get_weather"}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [WEATHER], "functions": [ADD["function"]]}, "functions"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                          "function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
]  # fmt: skip


def test_malformed_tool_requests_are_400s_and_disturb_no_stream(
    server: ServerProcess, client: openai.OpenAI
) -> None:
    done = threading.Event()
    streamed: list[str] = []

    def stream() -> None:
        for chunk in client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Count from one to forty."}],
            stream=True, max_tokens=120, temperature=0, extra_body={"ignore_eos": True},
        ):  # fmt: skip
            if chunk.choices:
                streamed.append(chunk.choices[0].finish_reason or "")
        done.set()

    worker = threading.Thread(target=stream)
    worker.start()
    base = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    for fields, param in BAD_TOOL_REQUESTS:
        response = httpx.post(f"{server.base_url}/v1/chat/completions",
                              json={**base, **fields}, timeout=60)  # fmt: skip
        assert response.status_code == 400, (fields, response.text)
        error = response.json()["error"]
        assert error["param"] == param, (fields, error)
        assert error["type"] == "invalid_request_error"
    worker.join(timeout=120)
    assert done.is_set() and streamed[-1] == "length" and len(streamed) > 100
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).json()["ok"]


# -- the client libraries agents are built with ---------------------------------------------


def test_langchain_bind_tools_and_the_tool_message_round_trip(server: ServerProcess) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    llm = ChatOpenAI(base_url=f"{server.base_url}/v1", api_key="unused", model=MODEL,
                     temperature=0, max_tokens=80, max_retries=0)  # fmt: skip
    bound = llm.bind_tools([multiply], tool_choice="multiply")
    messages: list[Any] = [HumanMessage("What is 6 times 7?")]
    reply = bound.invoke(messages)
    [call] = reply.tool_calls
    assert call["name"] == "multiply" and set(call["args"]) == {"a", "b"}
    messages += [reply, ToolMessage(str(multiply.invoke(call["args"])), tool_call_id=call["id"])]
    final = llm.bind_tools([multiply]).invoke(messages)
    assert final.content or final.tool_calls
    gathered = None
    for chunk in bound.stream([HumanMessage("What is 3 times 4?")]):
        gathered = chunk if gathered is None else gathered + chunk
    assert gathered is not None and [c["name"] for c in gathered.tool_calls] == ["multiply"]


def test_instructor_in_its_default_tools_mode(server: ServerProcess) -> None:
    import instructor
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    client = instructor.from_openai(openai.OpenAI(base_url=f"{server.base_url}/v1",
                                                  api_key="unused", max_retries=0))  # fmt: skip
    assert client.mode is instructor.Mode.TOOLS
    person = client.chat.completions.create(
        model=MODEL, response_model=Person, max_retries=0, temperature=0, max_tokens=80,
        messages=[{"role": "user", "content": "John is 30 years old."}],
    )  # fmt: skip
    assert isinstance(person, Person) and isinstance(person.age, int)


def test_an_openai_agents_agent_runs_its_tool_and_finishes(server: ServerProcess) -> None:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    ran: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        ran.append(city)
        return f"It is sunny in {city}."

    model = OpenAIChatCompletionsModel(
        model=MODEL,
        openai_client=openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused",
                                         max_retries=0),
    )  # fmt: skip
    agent = Agent(name="weather", instructions="Answer briefly.", model=model, tools=[get_weather],
                  model_settings=ModelSettings(tool_choice="required", max_tokens=80,
                                               temperature=0),
                  reset_tool_choice=True)  # fmt: skip
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=4))
    assert ran, "the agent never ran its tool"
    assert isinstance(result.final_output, str) and result.final_output
