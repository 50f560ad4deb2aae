"""The Responses API takes every tool type Codex sends (recorded from `codex exec` 0.171.0:
`function`, `namespace`, `web_search`; `custom` as its `apply_patch` is), on the tiny model
through the real engine. Shapes are Codex's; texts are short, for the tiny model's window."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import openai
import pytest
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.engines import model_files
from ovrunner.engines.tiny_model import build_tiny_gguf
from ovrunner.settings import Settings
from ovrunner.store import ModelStore
from tests.engines.test_tools_on_tiny_model import KNOWS_TOOLS

PATCH_FORMAT = r"\*\*\* Begin Patch\n[a-z ]{1,12}\n\*\*\* End Patch"
EXEC = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
        "additionalProperties": False,
    },
}
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    "tools": [
        {
            "type": "function",
            "name": "close_agent",
            "description": "Close one.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string", "maxLength": 8}},
                "required": ["id"],
            },
        }
    ],
}
PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "regex", "definition": PATCH_FORMAT},
}
WEB = {"type": "web_search", "external_web_access": False}
CODEX = {
    "model": "toolsmith", "instructions": "You are Codex.", "stream": True,
    "input": [{"type": "message", "role": "developer",
               "content": [{"type": "input_text", "text": "Sandbox: workspace-write."}]},
              {"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "add hello to a.py"}]}],
    "tools": [EXEC, AGENTS, PATCH, WEB], "tool_choice": "auto", "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"}, "store": False, "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199", "client_metadata": {"originator": "codex_exec"},
    "max_output_tokens": 24,
}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory = tmp_path_factory.mktemp("codex-tools")
    store = ModelStore(directory / "store")
    # A window of 4,096: the tools alone render to some 800 byte-sized tokens.
    gguf = build_tiny_gguf(directory / "toolsmith.gguf", chat_template=KNOWS_TOOLS,
                           context_length=4096)  # fmt: skip
    store.add(gguf, "toolsmith", engine="openvino", source="test",
              context_window=lambda ref: model_files.describe(ref).context_window)  # fmt: skip
    app = create_app(Settings(store_dir=directory / "store", model="toolsmith"))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def events(client: TestClient, body: dict) -> list[dict]:  # type: ignore[type-arg]
    response = client.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ")]  # fmt: skip


def test_codexs_request_is_answered(client: TestClient) -> None:
    done = events(client, CODEX)[-1]
    assert done["type"] in ("response.completed", "response.incomplete"), done
    # Echoed as sent, hosted tools included; only the runnable ones reached the model.
    assert [t["type"] for t in done["response"]["tools"]] == [
        "function", "namespace", "custom", "web_search"]  # fmt: skip


def test_a_custom_tool_call_carries_its_input_constrained_by_its_regex(client: TestClient) -> None:
    for stream in (True, False):
        # Greedy: the random model's sampled JSON may pad itself past any token bound.
        body = {**CODEX, "stream": stream, "max_output_tokens": 1500, "temperature": 0,
                "tool_choice": {"type": "custom", "name": "apply_patch"}}  # fmt: skip
        if stream:
            streamed = events(client, body)
            response = streamed[-1]["response"]
            deltas = [e for e in streamed if e["type"] == "response.custom_tool_call_input.delta"]
            assert "".join(e["delta"] for e in deltas) == response["output"][-1]["input"]
        else:
            answer = client.post("/v1/responses", json=body)
            assert answer.status_code == 200, answer.text
            response = answer.json()
        [call] = [item for item in response["output"] if item["type"] == "custom_tool_call"]
        assert call["name"] == "apply_patch" and call["call_id"]
        assert re.fullmatch(PATCH_FORMAT, call["input"]), call["input"]
    # Codex sends the call and its output back: both reach the template again.
    follow = {**CODEX, "stream": False, "input": [
        *CODEX["input"], call, {"type": "custom_tool_call_output", "call_id": call["call_id"],
                                "output": "Success. Updated a.py"}]}  # fmt: skip
    assert client.post("/v1/responses", json=follow).status_code == 200


def test_a_namespaced_tools_call_names_its_namespace(client: TestClient) -> None:
    body = {**CODEX, "stream": False, "max_output_tokens": 1500, "temperature": 0,
            "tool_choice": {"type": "function", "name": "close_agent"}}  # fmt: skip
    answer = client.post("/v1/responses", json=body).json()
    [call] = [item for item in answer["output"] if item["type"] == "function_call"]
    assert call["name"] == "close_agent" and call["namespace"] == "multi_agent_v1"
    assert "id" in json.loads(call["arguments"], strict=False)


def test_only_hosted_tools_is_a_plain_answer(client: TestClient) -> None:
    body = {**CODEX, "stream": False, "tools": [WEB]}
    answer = client.post("/v1/responses", json=body)
    assert answer.status_code == 200 and answer.json()["output"][0]["type"] == "message"


@pytest.mark.parametrize(
    ("tools", "param"),
    [([{"type": "hologram"}], "tools[0]"),
     ([{**PATCH, "format": {"type": "grammar", "syntax": "regex"}}], "tools[0].format.definition"),
     ([EXEC, {**AGENTS, "tools": [{**EXEC}]}], "tools")],
    ids=["unknown type", "grammar without definition", "a name twice"],
)  # fmt: skip
def test_what_cannot_be_taken_is_a_400_naming_it(client: TestClient, tools, param) -> None:  # type: ignore[no-untyped-def]
    api = openai.OpenAI(base_url="http://localhost/v1", api_key="x", http_client=client,
                        max_retries=0)  # fmt: skip
    with pytest.raises(openai.BadRequestError) as refused:
        api.responses.create(model="toolsmith", input="x", tools=tools)
    assert refused.value.body["param"] == param, refused.value.body  # type: ignore[index]
