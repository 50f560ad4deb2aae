"""The Responses store keeps its bounds, survives a reopen and migrates explicitly, in every
backend: SQLite in memory, a SQLite file, and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ovrunner.errors import ResponseStoreUnavailableError
from ovrunner.response_store import Bounds, ResponseStore, open_response_store
from ovrunner.response_store.migrations import LATEST
from tests.support.postgres import PostgresCluster

MB = 1 << 20
BACKENDS = ["memory", "sqlite", "postgresql"]
_databases = itertools.count()

Opener = Callable[[Bounds], ResponseStore]


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens stores on one database of the backend: two calls reach the same data."""
    if request.param == "memory":
        return lambda bounds: open_response_store("memory", tmp_path, bounds)
    if request.param == "sqlite":
        return lambda bounds: open_response_store(None, tmp_path, bounds)
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.create_database(f"responses_{next(_databases)}")
    return lambda bounds: open_response_store(url, tmp_path, bounds)


def response(response_id: str, text: str = "") -> dict:
    return {"id": response_id, "output": [{"type": "message", "content": text}]}


def bounds(entries: int = 100, size: int = MB, age_s: float = 3600) -> Bounds:
    return Bounds(entries, size, age_s)


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_at_most_max_entries_are_kept_oldest_out_first(opener: Opener) -> None:
    async def scenario() -> list[bool]:
        store = opener(bounds(entries=2))
        for name in ("a", "b", "c"):
            await store.put(response(name), [{"type": "message", "content": name}])
        found = [await store.get(name) is not None for name in ("a", "b", "c")]
        kept = await store.get("c")
        assert kept is not None and kept.input_items == [{"type": "message", "content": "c"}]
        await store.close()
        return found

    assert run(scenario()) == [False, True, True]


def test_the_byte_bound_holds_and_an_answer_too_big_is_not_kept(opener: Opener) -> None:
    async def scenario() -> None:
        store = opener(bounds(size=1000))
        await store.put(response("big", "x" * 2000), [])
        assert await store.get("big") is None
        for i in range(10):
            await store.put(response(str(i), "y" * 200), [])
        kept = [i for i in range(10) if await store.get(str(i)) is not None]
        assert 0 < len(kept) < 5 and kept[-1] == 9 and 0 not in kept
        await store.close()

    run(scenario())


def test_answers_older_than_the_age_bound_are_forgotten(opener: Opener) -> None:
    async def scenario() -> None:
        store = opener(bounds(age_s=0.5))
        await store.put(response("old"), [])
        assert await store.get("old") is not None
        await asyncio.sleep(0.6)
        assert await store.get("old") is None
        await store.put(response("new"), [])  # and the old row is deleted, not only hidden
        await store.close()

    run(scenario())


def test_none_are_kept_when_keeping_is_off_and_delete_says_what_it_did(opener: Opener) -> None:
    async def scenario() -> None:
        off = opener(bounds(entries=0))
        await off.put(response("a"), [])
        assert await off.get("a") is None and await off.delete("a") is False
        await off.close()
        on = opener(bounds())
        await on.put(response("b"), [])
        assert await on.delete("b") is True and await on.get("b") is None
        await on.close()

    run(scenario())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_reopened_store_has_what_was_committed(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "postgresql":
        url: str | None = request.getfixturevalue("postgres").create_database("reopened")
    else:
        url = None

    async def scenario() -> None:
        first = open_response_store(url, tmp_path, bounds())
        await first.put(response("kept", "é and ünïcode"), [{"id": "msg_1"}])
        await first.close()
        second = open_response_store(url, tmp_path, bounds())
        kept = await second.get("kept")
        assert kept is not None and kept.response == response("kept", "é and ünïcode")
        await second.close()

    run(scenario())


def test_migrations_are_recorded_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_response_store(None, tmp_path, bounds())
        await store.put(response("a"), [])
        await store.close()
        db = sqlite3.connect(tmp_path / "responses.sqlite3")
        assert db.execute("SELECT version FROM ovrunner_schema").fetchall() == [(LATEST,)]
        with db:
            db.execute("INSERT INTO ovrunner_schema (version) VALUES (?)", (LATEST + 1,))
        db.close()
        newer = open_response_store(None, tmp_path, bounds())
        with pytest.raises(ResponseStoreUnavailableError, match="newer than this ovrunner"):
            await newer.get("a")
        await newer.close()

    run(scenario())


def test_a_database_that_cannot_be_reached_is_a_503_naming_it_without_its_password(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        url = "postgresql://user:secret@127.0.0.1:1/nothing"
        store = open_response_store(url, tmp_path, bounds())
        with pytest.raises(ResponseStoreUnavailableError) as raised:
            await store.get("a")
        error = raised.value
        assert error.status_code == 503 and error.headers()["Retry-After"]
        assert "127.0.0.1:1" in error.message and "secret" not in error.message
        await store.close()

    run(scenario())


def test_the_postgresql_store_reconnects_after_the_server_restarts(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("restarted")

    async def scenario() -> None:
        store = open_response_store(url, tmp_path, bounds())
        await store.put(response("before"), [])
        await asyncio.to_thread(postgres.restart)  # every pooled connection is dropped
        kept = await store.get("before")
        assert kept is not None and kept.response == response("before")
        await store.put(response("after"), [])
        assert await store.get("after") is not None
        await store.close()

    run(scenario())
