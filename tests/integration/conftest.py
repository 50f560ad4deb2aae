from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.server import ServerProcess

MODEL = "smollm2-135m"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on the embedded SmolLM2, loaded at start-up, shared by the session."""
    process = ServerProcess(tmp_path_factory.mktemp("store"), "--preload").wait_ready()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def async_client(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
