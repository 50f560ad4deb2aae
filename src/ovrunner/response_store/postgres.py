"""The Responses store in PostgreSQL, shared by replicas (`responses_db = "postgresql://..."`).

psycopg 3 with a small connection pool; the pool opens at first use and reconnects on its own
after the server restarts. Migrations take a transaction-scoped advisory lock, so replicas that
start together migrate one after another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from ovrunner.response_store.base import Bounds, ResponseStore

POOL_SIZE = 4
CONNECT_TIMEOUT_S = 5
# Any constant of our own: the key of the lock that serializes migrations.
MIGRATION_LOCK = 0x6F7672756E  # "ovrun"


class PostgresResponseStore(ResponseStore):
    def __init__(self, url: str, bounds: Bounds) -> None:
        super().__init__(bounds, workers=POOL_SIZE)
        info = psycopg.conninfo.conninfo_to_dict(url)
        # The address only: a URL may carry a password.
        self.name = f"PostgreSQL at {info.get('host', 'localhost')}:{info.get('port', 5432)}"
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            timeout=CONNECT_TIMEOUT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
            # A connection the server dropped (a restart) is found and replaced before use.
            check=psycopg_pool.ConnectionPool.check_connection,
        )
        self._opened = False
        self._opening = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._opening:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True
        with self._pool.connection() as db:  # commits on leaving, rolls back on error
            yield db

    def _lock_for_migration(self, db: Any) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    def _unavailable(self, error: Exception) -> bool:
        return isinstance(error, (psycopg.OperationalError, psycopg_pool.PoolTimeout))

    def _close(self) -> None:
        if self._opened:
            self._pool.close()
