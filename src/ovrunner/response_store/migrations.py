"""The Responses store's schema, as numbered migrations applied in order, each once.

`ovrunner_schema` records the version a database is at. A migration is never edited once
released: a change of schema is a new one at the end. The SQL is what SQLite and PostgreSQL
share; JSON is kept as text, exactly as it was sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        "CREATE TABLE responses (id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, "
        "size BIGINT NOT NULL, response TEXT NOT NULL, input_items TEXT NOT NULL)",
        "CREATE INDEX responses_by_age ON responses (created_at)",
    ]),
]  # fmt: skip
LATEST = MIGRATIONS[-1][0]


class SchemaTooNewError(RuntimeError):
    pass


def migrate(db: Any, sql: Callable[[str], str], lock: Callable[[Any], None]) -> int:
    """Bring the database `db` (a connection inside a transaction) to the latest version;
    returns the version it was at. `lock` keeps other processes out meanwhile."""
    lock(db)
    db.execute("CREATE TABLE IF NOT EXISTS ovrunner_schema (version INTEGER NOT NULL)")
    found = db.execute("SELECT MAX(version) FROM ovrunner_schema").fetchone()[0] or 0
    if found > LATEST:
        raise SchemaTooNewError(
            f"the stored responses' database is at schema version {found}, newer than this "
            f"ovrunner's ({LATEST}): upgrade ovrunner, or point responses_db elsewhere"
        )
    for version, statements in MIGRATIONS:
        if version > found:
            for statement in statements:
                db.execute(statement)
            db.execute(sql("INSERT INTO ovrunner_schema (version) VALUES (%s)"), (version,))
    return found
