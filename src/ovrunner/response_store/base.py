"""What every backend of the Responses store does, in SQL that SQLite and PostgreSQL share.

The SQL is written with `%s` placeholders (psycopg's); SQLite's backend swaps them for `?`.
Calls run on a small thread pool of the store's own, so a slow database never blocks the
event loop and is never queued behind a model load on the default executor.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from ovrunner.errors import ResponseStoreUnavailableError
from ovrunner.response_store.migrations import SchemaTooNewError, migrate

T = TypeVar("T")


@dataclass(frozen=True)
class Bounds:
    max_entries: int  # 0: nothing is kept
    max_bytes: int
    max_age_s: float


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the response object, as it was sent
    input_items: list[dict[str, Any]]  # the whole conversation it answered, as items


class Connection(Protocol):
    """What the store uses of a DB-API connection (sqlite3's and psycopg's both have it)."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


_UPSERT = (
    "INSERT INTO responses (id, created_at, size, response, input_items) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, "
    "size = excluded.size, response = excluded.response, input_items = excluded.input_items"
)
# Newest first, the running count and size decide who stays; ties broken by id.
_EVICT = (
    "DELETE FROM responses WHERE created_at < %s OR id IN (SELECT id FROM ("
    "SELECT id, ROW_NUMBER() OVER newest AS n, SUM(size) OVER newest AS total FROM responses "
    "WINDOW newest AS (ORDER BY created_at DESC, id ROWS UNBOUNDED PRECEDING)) AS ranked "
    "WHERE n > %s OR total > %s)"
)
_GET = "SELECT response, input_items FROM responses WHERE id = %s AND created_at >= %s"
_DELETE = "DELETE FROM responses WHERE id = %s"


class ResponseStore(ABC):
    """Stored answers in a SQL database; the backends say how to connect."""

    name: str  # for messages: "SQLite at PATH", "PostgreSQL at HOST"
    placeholder = "%s"

    def __init__(self, bounds: Bounds, workers: int) -> None:
        self.bounds = bounds
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="response-store")
        self._migrated = False

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Connection]:
        """A connection inside one transaction: committed on leaving, rolled back on error."""

    @abstractmethod
    def _unavailable(self, error: Exception) -> bool:
        """Whether `error` is the database's (unreachable, locked, full), not a bug here."""

    @abstractmethod
    def _close(self) -> None:
        """Release connections (called once, on the store's thread)."""

    async def put(self, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        """Keep an answer; returns once it is committed (so a crash after it loses nothing)."""
        response_json, items_json = json.dumps(response), json.dumps(input_items)
        size = len(response_json) + len(items_json)
        if self.bounds.max_entries == 0 or size > self.bounds.max_bytes:
            return
        row = (response["id"], time.time(), size, response_json, items_json)
        await self._call(self._put, row)

    async def get(self, response_id: str) -> StoredResponse | None:
        row = await self._call(self._get, response_id)
        return None if row is None else StoredResponse(json.loads(row[0]), json.loads(row[1]))

    async def delete(self, response_id: str) -> bool:
        return await self._call(self._delete, response_id)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    # -- on the store's threads ----------------------------------------------------------------

    def _put(self, row: tuple[Any, ...]) -> None:
        bounds = self.bounds
        with self._transaction() as db:
            db.execute(self._sql(_UPSERT), row)
            db.execute(self._sql(_EVICT),
                       (time.time() - bounds.max_age_s, bounds.max_entries, bounds.max_bytes))  # fmt: skip

    def _get(self, response_id: str) -> tuple[str, str] | None:
        with self._transaction() as db:
            row = db.execute(self._sql(_GET), (response_id, time.time() - self.bounds.max_age_s))
            found = row.fetchone()
        return None if found is None else (found[0], found[1])

    def _delete(self, response_id: str) -> bool:
        with self._transaction() as db:
            return bool(db.execute(self._sql(_DELETE), (response_id,)).rowcount)

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "%s" else sql.replace("%s", self.placeholder)

    async def _call(self, work: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, partial(self._migrated_call, work, *args)
            )
        except Exception as exc:
            if not (isinstance(exc, SchemaTooNewError) or self._unavailable(exc)):
                raise
            # The driver's message names the database's state, never a stored answer.
            raise ResponseStoreUnavailableError(
                f"the stored responses ({self.name}) cannot be reached: {exc}", retry_after_s=5
            ) from exc

    def _migrated_call(self, work: Callable[..., T], *args: Any) -> T:
        if not self._migrated:
            with self._transaction() as db:
                migrate(db, self._sql, self._lock_for_migration)
            self._migrated = True
        return work(*args)

    @abstractmethod
    def _lock_for_migration(self, db: Connection) -> None:
        """Keep other replicas out while this one migrates (PostgreSQL takes a lock)."""
