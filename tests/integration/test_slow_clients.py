"""Slow and idle clients cannot hold the server: 5,000 connections that send half a request
header and then nothing, beside a real chat; and a cap on open connections."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cli import store_with_tiny
from tests.support.server import ServerProcess

HALF_A_HEADER = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"
HEADER_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[ServerProcess]:
    store = store_with_tiny(tmp_path_factory.mktemp("slow-store"), tiny_gguf)
    process = ServerProcess(store, "--model", "tiny", "--preload",
                            "--header-timeout-s", str(HEADER_TIMEOUT_S)).wait_ready()  # fmt: skip
    yield process
    process.stop()


async def open_slow(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`count` connections, each having sent half a request header."""
    connections = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_A_HEADER)
        connections.append((reader, writer))
    # A connection the server refused (over the cap) may already be reset: seen by the caller.
    await asyncio.gather(*(w.drain() for _, w in connections), return_exceptions=True)
    return connections


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server closed the connection within `timeout`: an end of stream, or a reset
    (a connection refused over the cap is aborted, which the kernel may report either way)."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_five_thousand_slow_connections_neither_block_nor_stay(guarded: ServerProcess) -> None:
    async def scenario() -> tuple[float, float, int]:
        connections = await open_slow(guarded.port, 5000)
        opened = time.monotonic()

        def chat() -> float:
            client = openai.OpenAI(base_url=f"{guarded.base_url}/v1", api_key="x", max_retries=0)
            started = time.monotonic()
            answer = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8
            )
            assert answer.choices[0].finish_reason in ("stop", "length")
            assert httpx.get(f"{guarded.base_url}/healthz", timeout=5).status_code == 200
            return time.monotonic() - started

        took = await asyncio.to_thread(chat)
        closed = await asyncio.gather(*(closed_by_server(r, HEADER_TIMEOUT_S + 10)
                                        for r, _ in connections))  # fmt: skip
        all_closed_after = time.monotonic() - opened
        for _, writer in connections:
            writer.close()
        return took, all_closed_after, sum(closed)

    took, all_closed_after, closed = asyncio.run(scenario())
    assert took < 5, f"a chat beside 5,000 slow connections took {took:.1f} s"
    assert closed == 5000
    assert all_closed_after < HEADER_TIMEOUT_S + 10


def test_connections_beyond_the_cap_are_closed_at_once(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> None:
    store = store_with_tiny(tmp_path_factory.mktemp("capped-store"), tiny_gguf)
    server = ServerProcess(store, "--model", "tiny", "--max-connections", "50").wait_ready()
    try:

        async def scenario() -> tuple[int, int]:
            held = await open_slow(server.port, 50)
            extra = await open_slow(server.port, 10)
            # Well within the header timeout (10 s): refused at once, not timed out.
            refused = await asyncio.gather(*(closed_by_server(r, 3) for r, _ in extra))
            still_open = await asyncio.gather(*(closed_by_server(r, 0.2) for r, _ in held))
            for _, writer in held + extra:
                writer.close()
            return sum(refused), still_open.count(False)

        refused, held = asyncio.run(scenario())
        assert refused == 10 and held == 50
        # Once they are gone, the server takes clients again.
        deadline = time.monotonic() + 5
        while True:
            try:
                assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server took no client after the cap"
                time.sleep(0.05)
    finally:
        server.stop()


def test_a_client_gone_mid_body_is_a_499_not_a_server_error(guarded: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\"")  # fmt: skip
        time.sleep(0.3)  # the request is in the app, reading its body
    deadline = time.monotonic() + 10
    while "POST /v1/chat/completions 499" not in guarded.log():
        assert time.monotonic() < deadline, guarded.log()[-2000:]
        time.sleep(0.1)
    assert "Traceback" not in guarded.log()
    assert httpx.get(f"{guarded.base_url}/healthz", timeout=5).status_code == 200
