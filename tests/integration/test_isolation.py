"""No request can hurt another, and an engine failure loses no stream: a real server on
SmolLM2, its engine process killed with SIGKILL, and a barrage of bad requests beside a long
stream.

How the kill tests prove that no token was dropped or repeated: the prompt is SmolLM2's own
chat turn with the answer begun ("1. 1\\n2. 2\\n"), and greedy decoding goes on with
"3. 3\\n4. 4\\n...", a text whose every token is known from the ones before it. (Asked
only to count, four batched copies sometimes open with another first token: a near-tie that
bf16 rounding decides, kill or no kill; the begun answer removes it.) Each stream asks for
logprobs, which list every generated token once: there must be exactly `max_tokens` of them,
they must join to exactly the streamed text, and the text must count on without a gap or a
repeat across the kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.integration.conftest import MODEL
from tests.support.cli import store_with_tiny
from tests.support.server import ServerProcess

# SmolLM2-135M-Instruct's chat template, rendered, with the assistant's answer begun.
COUNT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
         "Face<|im_end|>\n<|im_start|>user\nCount from 1 to 100, one number per line."
         "<|im_end|>\n<|im_start|>assistant\n1. 1\n2. 2\n")  # fmt: skip


@pytest.fixture(scope="module")
def isolated(server: ServerProcess) -> Iterator[ServerProcess]:
    """A SmolLM2 server of its own (its engine is killed here); it reuses the session's IR."""
    # Several kills here fall within one crash window: room for them all.
    process = ServerProcess(server.store_dir, "--preload",
                            env={"OVRUNNER_CRASH_LIMIT": "10"}).wait_ready()  # fmt: skip
    yield process
    process.stop()


COUNT_CHAT = [{"role": "user", "content": "Count from 1 to 100."}]


def runner(server: ServerProcess) -> dict:
    return httpx.get(f"{server.base_url}/engines/ps", timeout=10).json()["runners"][0]


def assert_counting(text: str, first: int = 3) -> None:
    lines = text.split("\n")
    assert len(lines) > 5, text
    for number, line in enumerate(lines[:-1], start=first):
        assert line == f"{number}. {number}", (number, text)
    last = first + len(lines) - 1
    assert f"{last}. {last}".startswith(lines[-1]), text


class CountingStream:
    def __init__(self, client: openai.AsyncOpenAI, max_tokens: int = 100) -> None:
        self.client = client
        self.max_tokens = max_tokens
        self.text = ""
        self.tokens: list[str] = []
        self.usage: object = None
        self.finish_reason: str | None = None

    async def run(self) -> CountingStream:
        stream = await self.client.completions.create(
            model=MODEL, prompt=COUNT, max_tokens=self.max_tokens, temperature=0, stream=True,
            logprobs=0, stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        )  # fmt: skip
        async for chunk in stream:
            if chunk.usage is not None:
                self.usage = chunk.usage
            for choice in chunk.choices:
                self.text += choice.text
                if choice.logprobs and choice.logprobs.tokens:
                    self.tokens += choice.logprobs.tokens
                self.finish_reason = choice.finish_reason or self.finish_reason
        return self

    def assert_whole(self, *, counting: bool = True) -> None:
        assert self.usage is not None and self.usage.completion_tokens == self.max_tokens
        assert len(self.tokens) == self.max_tokens and "".join(self.tokens) == self.text
        assert self.finish_reason == "length"
        if counting:  # SmolLM2 counts right to about 50: 100 tokens reach 28
            assert_counting(self.text)


def sdk(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)


# -- bad requests beside a long stream --------------------------------------------------------

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
BAD_SCHEMAS = [
    {"type": "nope"},
    {"$ref": "#/$defs/none"},
    {"type": "integer", "minimum": "x"},
    {"type": "object", "properties": {"a": {"type": ["string", 5]}}},
    "not a schema",
]
WEIRD_VALUES = [2**64, -(2**64), 10**400, 1e308, -1e308, "\ud800", "a\udfff", "", None, True,
                [], {}, [[[]]], "x" * 5000, 0.5, -1]  # fmt: skip
FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
          "n", "stop", "seed", "presence_penalty", "frequency_penalty", "stream",
          "stream_options", "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos",
          "keep_alive", "response_format", "logprobs", "top_logprobs", "prompt", "echo",
          "suffix", "job", "input", "max_new_tokens"]  # fmt: skip
ROUTES = ["/v1/chat/completions", "/v1/completions", "/exp/v1/worker/generate",
          "/models/import", "/engines/unload"]  # fmt: skip


def bad_requests(seed: int) -> list[tuple[str, bytes]]:
    """Values no OpenAPI document describes: out-of-range integers, huge floats, lone
    surrogates, invalid schemas, and each field of each route with each wrong type."""
    rng = random.Random(seed)
    bases = {"/v1/chat/completions": CHAT, "/v1/completions": {"model": MODEL, "prompt": "hi",
             "max_tokens": 2}, "/exp/v1/worker/generate": {"job": "title", "input": "hi"},
             "/models/import": {"path": "/nonexistent"}, "/engines/unload": {"models": []}}  # fmt: skip
    requests = []
    for schema in BAD_SCHEMAS:
        for route in ("/v1/chat/completions", "/v1/completions"):
            body = {**bases[route], "response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "schema": schema}}}  # fmt: skip
            requests.append((route, json.dumps(body).encode()))
    for route in ROUTES:
        for field in FIELDS:
            for value in rng.sample(WEIRD_VALUES, 4):
                body = {**bases[route], field: value}
                if field == "stream" and value is True:
                    continue  # a stream of a valid request is fine, and slow to read
                raw = json.dumps(body).encode()  # lone surrogates travel as JSON escapes
                requests.append((route, raw.replace(b"1e+308", b"1e999")))
    requests += [(route, b'{"model": ') for route in ROUTES]
    rng.shuffle(requests)
    return requests


async def barrage(base_url: str, requests: list[tuple[str, bytes]]) -> list[tuple[int, dict]]:
    answers: list[tuple[int, dict]] = []
    limit = asyncio.Semaphore(4)

    async def one(http: httpx.AsyncClient, route: str, raw: bytes) -> None:
        async with limit:
            response = await http.post(route, content=raw,
                                       headers={"Content-Type": "application/json"})  # fmt: skip
            answers.append((response.status_code, response.json()))

    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        await asyncio.gather(*(one(http, route, raw) for route, raw in requests))
    return answers


def test_bad_requests_beside_a_long_stream_are_400s_and_hurt_nothing(
    isolated: ServerProcess,
) -> None:
    pid = runner(isolated)["stats"]["engine_pid"]
    requests = bad_requests(seed=13)

    async def scenario() -> tuple[CountingStream, list[tuple[int, dict]]]:
        long = asyncio.ensure_future(CountingStream(sdk(isolated), max_tokens=600).run())
        answers = await barrage(isolated.base_url, requests)
        return await long, answers

    long, answers = asyncio.run(scenario())
    long.assert_whole(counting=False)
    server_errors = [(status, body) for status, body in answers if status >= 500]
    assert server_errors == []
    for status, body in answers:
        if status >= 400:
            assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param",
                                                                     "code"}, body  # fmt: skip
    assert sum(status == 400 for status, _ in answers) > len(requests) / 2
    assert runner(isolated)["stats"]["engine_pid"] == pid  # no request reached a failure
    assert runner(isolated)["in_use"] == 0
    print(
        f"{len(requests)} bad requests: "
        + ", ".join(
            f"{code}: {sum(s == code for s, _ in answers)}"
            for code in sorted({s for s, _ in answers})
        )
    )


def test_a_client_gone_before_the_first_byte_leaves_no_lease(isolated: ServerProcess) -> None:
    import socket

    body = json.dumps({**CHAT, "max_tokens": 50, "stream": True}).encode()
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", isolated.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    isolated.wait_idle(timeout=10)
    assert runner(isolated)["in_use"] == 0


# -- the engine process killed --------------------------------------------------------------


def test_a_kill_during_four_streams_loses_no_token(isolated: ServerProcess) -> None:
    async def scenario() -> tuple[list[CountingStream], int]:
        streams = [CountingStream(sdk(isolated)) for _ in range(4)]
        tasks = [asyncio.ensure_future(s.run()) for s in streams]
        while not all(len(s.tokens) >= 40 for s in streams):
            assert not any(t.done() for t in tasks), "a stream ended before the kill"
            await asyncio.sleep(0.005)
        killed = runner(isolated)["stats"]["engine_pid"]
        os.kill(killed, signal.SIGKILL)
        await asyncio.gather(*tasks)
        return streams, killed

    streams, killed = asyncio.run(scenario())
    for stream in streams:
        stream.assert_whole()
    stats = runner(isolated)["stats"]
    assert stats["engine_pid"] != killed and stats["restarts"] >= 1
    assert runner(isolated)["in_use"] == 0


def test_a_kill_during_prefill_resumes_from_the_prompt(isolated: ServerProcess) -> None:
    words = random.Random().choices(["harbour", "lantern", "copper", "meadow"], k=2400)
    prompt = [{"role": "user", "content": " ".join(words)}]  # unique: no prefix-cache hit
    chunks: list[str] = []
    before = runner(isolated)["stats"]["restarts"]

    def long_prefill() -> None:
        with httpx.stream("POST", f"{isolated.base_url}/v1/chat/completions", timeout=120,
                          json={"model": MODEL, "messages": prompt, "max_tokens": 8,
                                "temperature": 0, "ignore_eos": True, "stream": True,
                                "stream_options": {"include_usage": True}}) as response:  # fmt: skip
            chunks.extend(line for line in response.iter_lines() if line.startswith("data: "))

    thread = threading.Thread(target=long_prefill)
    thread.start()
    deadline = time.monotonic() + 30
    while runner(isolated)["stats"]["running"] == 0:  # in the engine, prefilling
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert chunks == []  # no token yet: the response has not begun
    os.kill(runner(isolated)["stats"]["engine_pid"], signal.SIGKILL)
    thread.join(120)
    assert chunks[-1] == "data: [DONE]"
    usage = json.loads(chunks[-2].removeprefix("data: "))["usage"]
    assert usage["completion_tokens"] == 8 and usage["prompt_tokens"] > 2400
    assert runner(isolated)["stats"]["restarts"] == before + 1


def test_an_idle_engine_killed_is_restarted_for_the_next_request(isolated: ServerProcess) -> None:
    isolated.wait_idle(timeout=10)
    before = runner(isolated)["stats"]
    os.kill(before["engine_pid"], signal.SIGKILL)
    stream = asyncio.run(CountingStream(sdk(isolated), max_tokens=30).run())
    stream.assert_whole()
    after = runner(isolated)["stats"]
    assert (
        after["restarts"] == before["restarts"] + 1 and after["engine_pid"] != before["engine_pid"]
    )


def test_a_stream_that_cannot_be_resumed_ends_with_an_error_event(isolated: ServerProcess) -> None:
    """n = 2 cannot go on after a kill, and does not hang: its error in OpenAI's shape. The
    pipeline hands over n > 1 sequences only when they finish, and a response begins with the
    first delta, so here the error comes before the first byte: a 500 (the kill is timed by
    the engine's step count, not by chunks)."""
    lines: list[str] = []
    statuses: list[int] = []
    body = {"model": MODEL, "messages": COUNT_CHAT, "max_tokens": 300, "n": 2, "temperature": 0.7,
            "ignore_eos": True, "stream": True}  # fmt: skip

    def read() -> None:
        with httpx.stream("POST", f"{isolated.base_url}/v1/chat/completions", json=body,
                          timeout=120) as response:  # fmt: skip
            statuses.append(response.status_code)
            lines.extend(line for line in response.iter_lines() if line.startswith(("data: ", "{")))  # fmt: skip

    steps = runner(isolated)["stats"]["steps"]
    thread = threading.Thread(target=read)
    thread.start()
    deadline = time.monotonic() + 30
    while runner(isolated)["stats"]["steps"] < steps + 20:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    os.kill(runner(isolated)["stats"]["engine_pid"], signal.SIGKILL)
    thread.join(120)
    if statuses == [200]:  # had it begun, the error would be its last event before [DONE]
        assert lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2].removeprefix("data: ")).get("error")
    else:
        assert statuses == [500], statuses
        error = json.loads(lines[0])["error"]
    assert error is not None, lines[-4:]
    assert "cannot be resumed" in error["message"] and error["code"] == "engine_error"
    assert runner(isolated)["in_use"] == 0


def test_a_crash_loop_is_a_503_until_unloaded(tiny_gguf: object, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    store = store_with_tiny(tmp_path_factory.mktemp("crash-store"), tiny_gguf)
    server = ServerProcess(store, "--model", "tiny", "--preload").wait_ready()
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)

        def ask() -> int:
            answer = client.completions.create(model="tiny", prompt="a", max_tokens=3)
            return answer.usage.completion_tokens if answer.usage else 0

        for _ in range(2):  # each kill is survived: the next request restarts the engine
            os.kill(runner(server)["stats"]["engine_pid"], signal.SIGKILL)
            ask()
        os.kill(runner(server)["stats"]["engine_pid"], signal.SIGKILL)
        with pytest.raises(openai.APIStatusError) as caught:
            ask()
        assert caught.value.status_code == 503
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert "failed 3 times" in caught.value.message
        ps = runner(server)
        assert ps["state"] == "error" and "failed 3 times" in ps["error"]
        status = httpx.get(f"{server.base_url}/engines/status").json()["engines"]
        failed = next(e for e in status if e["name"] == "openvino")["failed_runners"]
        assert [f["model"] for f in failed] == ["tiny"]
        with pytest.raises(openai.APIStatusError):
            ask()  # still refused: no reload storm
        unloaded = httpx.post(f"{server.base_url}/engines/unload", json={"models": ["tiny"]})
        # only the plain runner: the summary job's prompt-lookup runner loads on first use
        assert unloaded.json() == {"unloaded_runners": 1}
        assert ask() == 3  # a reload serves again
    finally:
        server.stop()


# -- requests from web pages ------------------------------------------------------------------


def test_pages_elsewhere_are_refused_and_real_clients_still_work(isolated: ServerProcess) -> None:
    import shutil
    import subprocess

    base = isolated.base_url
    for path in ("/healthz", "/v1/models", "/engines/ps"):
        response = httpx.get(f"{base}{path}", headers={"Host": "attacker.example"})
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "host_not_allowed"
    chat = json.dumps({**CHAT, "max_tokens": 2})
    form = httpx.post(f"{base}/v1/chat/completions", content=chat,
                      headers={"Content-Type": "text/plain"})  # fmt: skip
    assert form.status_code == 415
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
    assert client.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=2)
    if shutil.which("curl"):
        answer = subprocess.run(
            ["curl", "-s", f"{base}/v1/chat/completions", "-H", "Content-Type: application/json",
             "-d", chat], capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert json.loads(answer.stdout)["object"] == "chat.completion"
