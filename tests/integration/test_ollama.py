"""The Ollama API on a real server, through the official `ollama` client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import ollama
import pytest

from tests.integration.conftest import MODEL
from tests.support.hub_server import HubStandIn
from tests.support.server import ServerProcess

GREEDY = {"temperature": 0, "num_predict": 40}
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def client(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.base_url)


def test_list_show_and_ps_describe_the_models(client: ollama.Client) -> None:
    listed = {m.model: m for m in client.list().models}
    assert MODEL in listed and listed[MODEL].size > 50_000_000
    assert listed[MODEL].details.format == "gguf" and listed[MODEL].details.family == "llama"
    shown = client.show(MODEL)
    assert shown.modelinfo["llama.context_length"] == 8192
    assert "completion" in (shown.capabilities or [])
    client.chat(model=MODEL, messages=CAPITAL, options={"num_predict": 1})
    [loaded] = [m for m in client.ps().models if m.model == MODEL]
    assert loaded.size > 0 and loaded.expires_at is not None
    version = httpx.get(f"{client._client.base_url}/api/version").json()
    # What Codex --oss asks of an Ollama server (>= 0.13.4), and ovrunner's own beside it.
    assert tuple(map(int, version["version"].split("."))) >= (0, 13, 4) and version["ovrunner"]


def test_chat_whole_and_streamed_agree(client: ollama.Client) -> None:
    whole = client.chat(model=MODEL, messages=CAPITAL, options=GREEDY, stream=False)
    assert "Paris" in whole.message.content and whole.done and whole.done_reason == "stop"
    assert whole.prompt_eval_count > 10 and 0 < whole.eval_count < 40
    assert whole.total_duration >= whole.eval_duration > 0
    parts = list(client.chat(model=MODEL, messages=CAPITAL, options=GREEDY, stream=True))
    assert len(parts) > 2 and all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count
    cut = client.chat(model=MODEL, messages=CAPITAL, options={"num_predict": 3}, stream=False)
    assert cut.done_reason == "length" and cut.eval_count == 3


def test_generate_templates_the_prompt_unless_raw(client: ollama.Client) -> None:
    answer = client.generate(model=MODEL, prompt="What is the capital of France?", options=GREEDY)
    assert "Paris" in answer.response and answer.done
    raw = client.generate(model=MODEL, prompt="The capital of France is", raw=True,
                          options={"temperature": 0, "num_predict": 8})  # fmt: skip
    assert raw.response and raw.prompt_eval_count < answer.prompt_eval_count
    streamed = "".join(p.response for p in client.generate(
        model=MODEL, prompt="What is the capital of France?", options=GREEDY, stream=True))  # fmt: skip
    assert streamed == answer.response
    loaded = client.generate(model=MODEL, prompt="")  # Ollama's way to load a model
    assert loaded.done and loaded.done_reason == "load"


def test_format_and_tools(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    answer = client.chat(model=MODEL, messages=CAPITAL, format=schema, options=GREEDY)
    jsonschema.validate(json.loads(answer.message.content), schema)
    answer = client.chat(model=MODEL, messages=CAPITAL, format="json", options=GREEDY)
    assert answer.message.content.lstrip().startswith("{")  # an object (SmolLM2 nests on)
    if answer.done_reason == "stop":
        assert isinstance(json.loads(answer.message.content), dict)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
              "parameters": schema}}]  # fmt: skip
    plain = client.chat(model=MODEL, messages=CAPITAL, options={"num_predict": 1})
    offered = client.chat(model=MODEL, messages=CAPITAL, tools=tools, options={"num_predict": 1})
    assert offered.prompt_eval_count > plain.prompt_eval_count + 50  # the tools reach the model


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/chat", {"messages": CAPITAL}, 400),  # no model
        ("/api/chat", {"model": MODEL, "messages": "hello"}, 400),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, 400),
        ("/api/chat", {"model": MODEL, "messages": CAPITAL, "options": {"temperature": "hot"}}, 400),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "x",
                                                     "images": ["aGk="]}]}, 400),
        ("/api/generate", {"model": MODEL, "prompt": 42}, 400),
        ("/api/generate", {"model": "no-such-model", "prompt": "hi"}, 404),
        ("/api/show", {"model": "no-such-model"}, 404),
    ],
)  # fmt: skip
def test_malformed_input_is_a_4xx_in_ollama_shape(server: ServerProcess, path: str, body: dict,
                                                  status: int) -> None:  # fmt: skip
    response = httpx.post(f"{server.base_url}{path}", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]


def test_unknown_options_are_ignored_as_ollama_ignores_them(client: ollama.Client) -> None:
    answer = client.chat(model=MODEL, messages=CAPITAL,
                         options={**GREEDY, "num_ctx": 4096, "mirostat": 0, "num_thread": 2})  # fmt: skip
    assert "Paris" in answer.message.content


def test_a_disconnect_frees_the_request(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story."}],
            "options": {"num_predict": 2000, "ignore_eos": True}}  # fmt: skip
    with httpx.stream("POST", f"{server.base_url}/api/chat", json=body, timeout=60) as response:
        for i, _ in enumerate(response.iter_lines()):
            if i == 2:
                break
    server.wait_idle(timeout=1.0)  # the request left the pipeline within a second


@pytest.fixture(scope="module")
def hub_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> Iterator[tuple[ServerProcess, HubStandIn]]:
    repo = tmp_path_factory.mktemp("hub") / "tiny-gguf"
    repo.mkdir()
    (repo / "tiny.Q8_0.gguf").write_bytes(tiny_gguf.read_bytes())
    with HubStandIn({"acme/tiny-gguf": repo}) as stand_in:
        server = ServerProcess(tmp_path_factory.mktemp("pull-store"), "--hf-endpoint",
                               stand_in.endpoint).wait_ready()  # fmt: skip
        yield server, stand_in
        server.stop()


def test_pull_streams_progress_and_the_model_answers(
    hub_server: tuple[ServerProcess, HubStandIn],
) -> None:
    server, stand_in = hub_server
    client = ollama.Client(host=server.base_url)
    statuses = [p.status for p in client.pull("acme/tiny-gguf:tiny.Q8_0.gguf", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert stand_in.downloads == ["tiny.Q8_0.gguf"]
    assert "acme/tiny-gguf" in [m.model for m in client.list().models]
    answer = client.generate(model="acme/tiny-gguf", prompt="hello", options={"num_predict": 4})
    assert answer.done and answer.eval_count > 0
    client.delete("acme/tiny-gguf")
    assert "acme/tiny-gguf" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as failed:
        client.pull("acme/no-such-repo")
    assert failed.value.status_code == 404
