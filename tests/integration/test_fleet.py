"""A fleet, for real on loopback: three `ovrunner serve` replicas on one read-only model store,
sharing a PostgreSQL for stored Responses answers, behind LiteLLM's proxy and behind nginx,
as users deploy it."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cli import store_with_tiny
from tests.support.gateways import LITELLM_KEY, litellm_proxy, nginx
from tests.support.postgres import PostgresCluster
from tests.support.read_only import read_only_view
from tests.support.server import ServerProcess, free_port

REPLICAS = 3
STREAMS = 60
COOLDOWN_REQUESTS = 120


@dataclass
class Fleet:
    store: Path  # one store, read-only to every replica, as a shared model volume
    workdir: Path  # what the test itself writes: replica logs, the gateways' files
    database: str
    ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(REPLICAS)])
    replicas: list[ServerProcess] = field(default_factory=list)

    def start(self, index: int, *, wait: bool = True) -> ServerProcess:
        replica = ServerProcess(self.store, "--model", "tiny", "--preload",
                                "--shutdown-grace-s", "30", port=self.ports[index],
                                env={"OVRUNNER_RESPONSES_DB": self.database},
                                log_dir=self.workdir)  # fmt: skip
        if index < len(self.replicas):
            self.replicas[index] = replica
        else:
            self.replicas.append(replica)
        return replica.wait_ready() if wait else replica

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def heal(self) -> None:
        """Every replica up again (a test may have killed or drained one)."""
        for index, replica in enumerate(self.replicas):
            if replica.process.poll() is not None:
                replica.stop()
                self.start(index)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, postgres: PostgresCluster
) -> Iterator[Fleet]:
    # One store for all, mounted read-only, as operators mount one model volume into many
    # pods: what a replica writes (its compile cache, staging) goes to a directory of its own.
    store = store_with_tiny(tmp_path_factory.mktemp("fleet-store"), tiny_gguf)
    workdir = tmp_path_factory.mktemp("fleet-work")
    with read_only_view(store, tmp_path_factory.mktemp("fleet-volume")) as volume:
        fleet = Fleet(volume, workdir, postgres.create_database("fleet"))
        for index in range(REPLICAS):
            fleet.start(index, wait=False)
        try:
            for replica in fleet.replicas:
                replica.wait_ready()
            yield fleet
        finally:
            for replica in fleet.replicas:
                replica.stop()


@pytest.fixture
def healed(fleet: Fleet) -> Iterator[Fleet]:
    yield fleet
    fleet.heal()


@dataclass
class Outcome:
    text: str = ""
    finish: str | None = None
    error: str | None = None


def stream_chat(client: openai.OpenAI, prompt: str, max_tokens: int) -> Outcome:
    outcome = Outcome()
    try:
        stream = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
            stream=True,
        )  # fmt: skip
        for chunk in stream:
            for choice in chunk.choices:
                outcome.text += choice.delta.content or ""
                outcome.finish = choice.finish_reason or outcome.finish
    except Exception as exc:  # noqa: BLE001 - every failure is an outcome the test reads
        outcome.error = repr(exc)
    return outcome


def run_streams(
    client: openai.OpenAI, count: int, during: object = None, max_tokens: int = 48
) -> list[Outcome]:
    """`count` chat streams at once; `during()` runs once they are under way. Fails if any
    stream is still open two minutes later (a hang)."""
    outcomes = [Outcome() for _ in range(count)]

    def one(i: int) -> None:
        outcomes[i] = stream_chat(client, f"tell me story number {i}", max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    if callable(during):
        during()
    deadline = time.monotonic() + 120
    for thread in threads:
        thread.join(max(0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a stream hung"
    return outcomes


def running(replica: ServerProcess) -> float:
    text = httpx.get(f"{replica.base_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("vllm:num_requests_running{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def replica_log_statuses(replica: ServerProcess, method_path: str) -> list[int]:
    """The statuses `replica` answered `method_path` with, from its access log."""
    pattern = re.compile(rf"INFO ovrunner\.access: {re.escape(method_path)} (\d+) ")
    return [int(m.group(1)) for m in pattern.finditer(replica.log())]


def test_litellm_proxy_carries_60_streams_through_a_sigkilled_replica(healed: Fleet) -> None:
    """Every stream ends (none hangs). One the killed replica had not started answering is
    retried on another and completes; one it was answering ends with an error, since tokens
    already sent cannot be taken back (LiteLLM falls back only before the first chunk)."""
    workdir = healed.workdir / "litellm"
    workdir.mkdir(exist_ok=True)
    proxy = litellm_proxy(workdir, healed.urls(), "tiny")
    try:
        client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=LITELLM_KEY,
                               max_retries=0, timeout=90)  # fmt: skip
        victim = healed.replicas[1]
        busy_at_kill: list[float] = []

        def kill_when_busy() -> None:
            deadline = time.monotonic() + 30
            while (busy := running(victim)) == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            victim.process.send_signal(signal.SIGKILL)
            busy_at_kill.append(busy)

        outcomes = run_streams(client, STREAMS, kill_when_busy, max_tokens=128)
        assert busy_at_kill[0] > 0, "the replica was killed idle: the test proved nothing"
        unstarted_failures = [o.error for o in outcomes if o.error and not o.text]
        assert unstarted_failures == []
        cut = [o for o in outcomes if o.error]
        assert len(cut) <= busy_at_kill[0]  # only what the killed replica was answering
        assert all(o.finish in ("stop", "length") for o in outcomes if not o.error)
    finally:
        proxy.stop()


def test_replicas_serve_from_one_read_only_store(fleet: Fleet) -> None:
    """Each writes under a directory of its own (the embedded models' registration too);
    adding a model there is a clear 403."""
    before = sorted(str(p.relative_to(fleet.store)) for p in fleet.store.rglob("*"))
    caches = set()
    for url in fleet.urls():
        listed = httpx.get(f"{url}/v1/models").json()["data"]
        assert {"tiny", "smollm2-135m", "all-minilm-l6-v2"} <= {m["id"] for m in listed}
        assert httpx.get(f"{url}/v1/models/all-minilm-l6-v2").status_code == 200
        health = httpx.get(f"{url}/healthz").json()
        assert health["loaded"] is True
        caches.add(health["cache_dir"])
        assert not health["cache_dir"].startswith(str(fleet.store))
        refused = httpx.post(f"{url}/models/import", json={"path": str(fleet.store / "models" / "tiny" / "model"),
                                                         "name": "x"})  # fmt: skip
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "store_read_only"
    assert len(caches) == REPLICAS
    # The embedded embedder is built on first use: into the replica's own state directory.
    embedded = httpx.post(f"{fleet.urls()[0]}/v1/embeddings", timeout=120,
                          json={"model": "all-minilm-l6-v2", "input": "a shared volume"})  # fmt: skip
    assert embedded.status_code == 200, embedded.text
    assert sorted(str(p.relative_to(fleet.store)) for p in fleet.store.rglob("*")) == before


def test_previous_response_id_continues_on_another_replica(fleet: Fleet) -> None:
    clients = [openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
               for url in fleet.urls()]  # fmt: skip
    first = clients[0].responses.create(model="tiny", input="hello", max_output_tokens=8)
    second = clients[1].responses.create(model="tiny", input="and then", max_output_tokens=8,
                                         previous_response_id=first.id)  # fmt: skip
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert clients[2].responses.retrieve(second.id).output_text == second.output_text
    clients[2].responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        clients[0].responses.retrieve(first.id)


def test_nginx_drains_a_sigtermed_replica_with_no_client_error(healed: Fleet) -> None:
    gateway = nginx([url.removeprefix("http://") for url in healed.urls()])
    try:
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0,
                               timeout=90)  # fmt: skip
        drained = healed.replicas[0]

        def drain_when_busy() -> None:
            deadline = time.monotonic() + 30
            while running(drained) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            drained.process.send_signal(signal.SIGTERM)
            # New requests keep coming while it drains: they go to the others.
            more = run_streams(client, 12)
            assert [o.error for o in more if o.error] == []

        outcomes = run_streams(client, 24, drain_when_busy)
        assert [o.error for o in outcomes if o.error] == []
        assert all(o.finish in ("stop", "length") for o in outcomes)
        assert drained.process.wait(60) == 0  # it exited once its streams were done
        assert 200 in replica_log_statuses(drained, "POST /v1/chat/completions")
    finally:
        gateway.stop()


def test_nginx_sends_no_traffic_to_a_loading_replica(healed: Fleet) -> None:
    gateway = nginx([url.removeprefix("http://") for url in healed.urls()])
    try:
        loading = healed.replicas[2]
        loading.stop()
        loading = healed.start(2, wait=False)
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0,
                               timeout=60)  # fmt: skip
        answered = 0
        while loading.process.poll() is None and not is_ready(loading):
            answer = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            answered += answer.choices[0].finish_reason in ("stop", "length")
        assert answered > 0
        loading.wait_ready()
        assert replica_log_statuses(loading, "POST /v1/chat/completions") == []
    finally:
        gateway.stop()


def is_ready(replica: ServerProcess) -> bool:
    try:
        return httpx.get(f"{replica.base_url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class SlowUpload:
    """A request whose body trickles in (a byte every half second): in flight, so a draining
    server stays up, refusing every other request, for as long as it lasts."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")  # fmt: skip
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._trickle)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._done.wait(0.5):
            self.sock.sendall(b" ")

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()


def test_litellm_cools_down_a_replica_that_answers_503(healed: Fleet) -> None:
    """A draining replica answers 503 + Retry-After: after it, the proxy rests it."""
    workdir = healed.workdir / "litellm-cooldown"
    workdir.mkdir(exist_ok=True)
    # Random picks: least-busy prefers whichever idle replica it lists first, so it might
    # never try the draining one within the test.
    proxy = litellm_proxy(workdir, healed.urls(), "tiny", routing_strategy="simple-shuffle")
    draining = healed.replicas[2]
    upload = SlowUpload(draining.port)
    try:
        time.sleep(0.5)  # the upload's headers are in: it is in flight
        draining.process.send_signal(signal.SIGTERM)
        client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=LITELLM_KEY,
                               max_retries=0, timeout=60)  # fmt: skip

        def ask(_: int) -> str | None:
            answer = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            return answer.choices[0].finish_reason

        def refused() -> int:
            return replica_log_statuses(draining, "POST /v1/chat/completions").count(503)

        # Eight at a time. Picked at random, the draining replica would get a third of them
        # (and of their retries); cooled down after its refusals, it gets a few.
        with ThreadPoolExecutor(8) as pool:
            finishes = list(pool.map(ask, range(COOLDOWN_REQUESTS)))
        assert all(f in ("stop", "length") for f in finishes)
        assert draining.process.poll() is None, "the replica left before the test ended"
        print(f"the draining replica refused {refused()} of {COOLDOWN_REQUESTS}")
        assert 1 <= refused() <= COOLDOWN_REQUESTS // 6, "hammered, not rested"
    finally:
        proxy.stop()
        upload.close()
        draining.process.wait(30)
