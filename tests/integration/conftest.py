from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.cli import store_with_tiny
from tests.support.server import ServerProcess

MODEL = "smollm2-135m"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on the embedded SmolLM2, loaded at start-up, shared by the session."""
    process = ServerProcess(tmp_path_factory.mktemp("store"), "--preload").wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def tiny_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> Iterator[ServerProcess]:
    """A server on the tiny test model, imported with the CLI: fast enough to soak and fuzz."""
    store = store_with_tiny(tmp_path_factory.mktemp("tiny-store"), tiny_gguf)
    process = ServerProcess(store, "--model", "tiny", "--preload").wait_ready()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def async_client(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


# Every line a server may log during the suite: access lines (method, path, status, time),
# lifecycle events and uvicorn's own start-up and shutdown. Anything else could carry content.
LOG_LINE = re.compile(
    r"INFO ovrunner\.access: [A-Z]+ /\S* \d{3} [\d.]+ ms"
    r"|(INFO|WARNING|ERROR) ovrunner\.(lifecycle|app|draining|engines(\.\w+)+): [^\n]*"
    r"|INFO:     (Started server process \[\d+\]|Waiting for application (startup|shutdown)\."
    r"|Application (startup|shutdown) complete\.|Uvicorn running on \S+ \(Press CTRL\+C to quit\)"
    r"|Shutting down|Finished server process \[\d+\]|Waiting for background tasks to complete\.( \(CTRL\+C to force quit\))?"
    r"|Waiting for connections to close\. \(CTRL\+C to force quit\))"
    r"|imported \w+ \(gguf\)"
)


def sent_texts() -> list[str]:
    """The prompts and inputs the integration modules send (their string constants)."""
    texts: list[str] = []
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("tests.integration."):
            continue
        for value in vars(module).values():
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("content"), str):
                    item = item["content"]
                if isinstance(item, str) and len(item) >= 20 and " " in item:
                    texts.append(item)
    return texts


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_content() -> Iterator[None]:
    """After the whole integration run: the servers logged only known line shapes, and none of
    the prompts or inputs the suite sent."""
    yield
    texts = sent_texts()
    assert texts
    for server in ServerProcess.started:
        log = server.log_path.read_text(errors="replace")
        odd = [line for line in log.splitlines() if line and not LOG_LINE.fullmatch(line)]
        assert odd == [], f"unexpected log lines from {server.base_url}: {odd[:5]}"
        leaked = [t for t in texts if t in log]
        assert leaked == [], f"the log of {server.base_url} holds sent text: {leaked[:3]}"
