"""Server-sent events: the only module that frames SSE and writes `[DONE]`.

A failure after the stream has begun cannot change the status code any more, so it travels
as one `data:` event holding the OpenAI error object, followed by `[DONE]`; the `openai` SDK
raises on such an event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from ovrunner.errors import EngineError, OvrunnerError

log = logging.getLogger(__name__)

DONE = "[DONE]"
# Comment lines keep idle connections (a model still loading, a long prefill) from timing out.
PING_SECONDS = 15


async def _events(chunks: AsyncIterator[BaseModel | str]) -> AsyncIterator[dict[str, str]]:
    try:
        async for chunk in chunks:
            yield {"data": chunk if isinstance(chunk, str) else chunk.model_dump_json()}
    except OvrunnerError as exc:
        yield {"data": json.dumps(exc.to_body())}
    except Exception:
        log.exception("stream failed")
        yield {"data": json.dumps(EngineError("internal error while streaming").to_body())}
    yield {"data": DONE}


def sse_response(
    chunks: AsyncIterator[BaseModel | str],
    shutdown_grace_s: float = 0,
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> EventSourceResponse:
    """Stream `chunks` (wire models, or their JSON already rendered) as SSE events.

    On server shutdown a stream may run on for `shutdown_grace_s` to finish its answer (a
    little less than the server's own grace, so it ends before the server gives up).
    `on_close` runs once the response is over, however it ended (completed, the client gone
    before the first event, a send that failed, the server cancelling the request).
    """
    return _OwnedEventSource(
        _events(chunks),
        ping=PING_SECONDS,
        sep="\n",
        shutdown_grace_period=shutdown_grace_s * 0.9,
        on_close=on_close,
    )


class _OwnedEventSource(EventSourceResponse):
    def __init__(self, *args: Any, on_close: Callable[[], Awaitable[None]] | None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                await self._on_close()
