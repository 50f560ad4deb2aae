"""Streamed answers: the only module that frames SSE (and writes `[DONE]`) and NDJSON.

A failure after the stream has begun cannot change the status code any more, so it travels
in the stream, in the dialect's shape: for OpenAI one `data:` event holding the error object,
followed by `[DONE]` (the `openai` SDK raises on such an event); for Anthropic an `error`
event; for Ollama a last line `{"error": ...}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from sse_starlette import EventSourceResponse
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ovrunner.errors import Dialect, EngineError, OvrunnerError, error_body

log = logging.getLogger(__name__)

DONE = "[DONE]"
# Comment lines keep idle connections (a model still loading, a long prefill) from timing out.
PING_SECONDS = 15


Chunk = BaseModel | str


def _json(chunk: Chunk) -> str:
    return chunk if isinstance(chunk, str) else chunk.model_dump_json()


async def _failure(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk | OvrunnerError]:
    """The chunks, then the error that ended them early, if any."""
    try:
        async for chunk in chunks:
            yield chunk
    except OvrunnerError as exc:
        yield exc
    except Exception:
        log.exception("stream failed")
        yield EngineError("internal error while streaming")


async def _events(chunks: AsyncIterator[Chunk], dialect: str) -> AsyncIterator[dict[str, str]]:
    async for item in _failure(chunks):
        if isinstance(item, OvrunnerError):
            body = json.dumps(error_body(item, dialect))
            yield (
                {"event": "error", "data": body} if dialect == Dialect.ANTHROPIC else {"data": body}
            )
        elif dialect in (Dialect.ANTHROPIC, Dialect.RESPONSES):  # named by its own `type`
            data = _json(item)
            name = getattr(item, "type", None) or json.loads(data)["type"]
            yield {"event": name, "data": data}
        else:
            yield {"data": _json(item)}
    if dialect == Dialect.OPENAI:
        yield {"data": DONE}


def sse_response(
    chunks: AsyncIterator[Chunk],
    shutdown_grace_s: float = 0,
    on_close: Callable[[], Awaitable[None]] | None = None,
    dialect: str = Dialect.OPENAI,
) -> EventSourceResponse:
    """Stream `chunks` (wire models, or their JSON already rendered) as SSE events.

    On server shutdown a stream may run on for `shutdown_grace_s` to finish its answer (a
    little less than the server's own grace, so it ends before the server gives up).
    `on_close` runs once the response is over, however it ended (completed, the client gone
    before the first event, a send that failed, the server cancelling the request).
    """
    events = _OwnedEventSource(
        _events(chunks, dialect),
        ping=PING_SECONDS,
        sep="\n",
        shutdown_grace_period=shutdown_grace_s * 0.9,
    )
    return _owned(events, on_close)


class _RunsOnClose:
    """A response that runs its `_on_close` once it is over, however it ended (completed,
    the client gone before the first byte, a send that failed, the server cancelling)."""

    _on_close: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            if self._on_close is not None:
                await self._on_close()


class _OwnedEventSource(_RunsOnClose, EventSourceResponse):
    pass


class _OwnedStreamingResponse(_RunsOnClose, StreamingResponse):
    pass


def _owned(response: _RunsOnClose, on_close: Callable[[], Awaitable[None]] | None) -> Any:
    response._on_close = on_close
    return response


def ndjson_response(
    lines: AsyncIterator[dict[str, Any]],
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> StreamingResponse:
    """Stream `lines` as newline-delimited JSON (Ollama's streaming), a failure as a last
    `{"error": ...}` line. `on_close` runs once the response is over, however it ended
    (starlette stops the stream when the client disconnects)."""

    async def body() -> AsyncIterator[bytes]:
        async for item in _failure(lines):  # type: ignore[arg-type]
            line = error_body(item, Dialect.OLLAMA) if isinstance(item, OvrunnerError) else item
            yield (json.dumps(line, ensure_ascii=False) + "\n").encode()

    return _owned(_OwnedStreamingResponse(body(), media_type="application/x-ndjson"), on_close)
