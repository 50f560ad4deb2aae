"""The Responses API's memory: answers with their input, for `previous_response_id` and
`GET /v1/responses/{id}`, kept in a database so that a restart keeps them and replicas share
them.

`responses_db` picks the database: unset, SQLite in the state directory (`responses.sqlite3`; the store directory unless it is read-only);
`sqlite:///PATH` another SQLite file (replicas on one machine may share it); `postgresql://...`
a PostgreSQL server that replicas on several machines share; `memory`, SQLite in the process's
memory only (a restart forgets). Every backend keeps the same bounds: at most `max_entries`
answers and `max_bytes` of their JSON, none older than `max_age_s`, the oldest out first.
"""

from __future__ import annotations

from pathlib import Path

from ovrunner.response_store.base import Bounds, ResponseStore, StoredResponse

__all__ = ["Bounds", "ResponseStore", "StoredResponse", "open_response_store"]

DEFAULT_FILE = "responses.sqlite3"


def open_response_store(url: str | None, state_dir: Path, bounds: Bounds) -> ResponseStore:
    """The store `url` names (see the module's docstring). Nothing is opened until first use,
    so a database that is down does not keep the server from serving chats."""
    if url and url.startswith(("postgresql://", "postgres://")):
        from ovrunner.response_store.postgres import PostgresResponseStore

        return PostgresResponseStore(url, bounds)
    from ovrunner.response_store.sqlite import SqliteResponseStore

    if url == "memory":
        return SqliteResponseStore(":memory:", bounds)
    if url and url.startswith("sqlite:///"):
        return SqliteResponseStore(url.removeprefix("sqlite:///"), bounds)
    if url:
        raise ValueError(
            f"responses_db {url!r} is none of: postgresql://..., sqlite:///PATH, memory"
        )
    return SqliteResponseStore(str(state_dir / DEFAULT_FILE), bounds)
