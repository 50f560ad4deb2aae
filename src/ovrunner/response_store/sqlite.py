"""The Responses store in SQLite: the default, a file in the store directory.

WAL lets replicas on one machine share the file (readers never wait for the writer) and
`synchronous=FULL` makes each commit durable before the answer is returned. One connection,
used by the store's one thread, so no two calls of this process race on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ovrunner.response_store.base import Bounds, ResponseStore

BUSY_TIMEOUT_MS = 5000  # another process's write holds the file this long at most


class SqliteResponseStore(ResponseStore):
    placeholder = "?"

    def __init__(self, path: str, bounds: Bounds) -> None:
        super().__init__(bounds, workers=1)
        self.path = path
        self.name = "in memory" if path == ":memory:" else f"SQLite at {path}"
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are begun below, explicitly.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=BUSY_TIMEOUT_MS / 1000)  # fmt: skip
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._db = db
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        # IMMEDIATE takes the write lock at once: two writers never deadlock upgrading.
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _lock_for_migration(self, db: Any) -> None:
        pass  # BEGIN IMMEDIATE holds the file's write lock already

    def _unavailable(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
