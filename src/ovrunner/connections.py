"""Slow and idle clients: uvicorn's HTTP protocol with the guards a reverse proxy would add.

uvicorn times out a keep-alive connection between requests, but not one that sends half a
request and then nothing (slowloris), and it opens as many connections as it is offered, each
a file descriptor. This protocol closes a connection whose request headers have not all
arrived within `header_timeout_s` of its start, or whose body stalls for `body_timeout_s`
between two chunks (nginx's `client_header_timeout` and `client_body_timeout`), and closes a
new connection at once while `max_connections` are open. A normal client never meets them.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Descriptors kept for what is not a client connection: model files, engine pipes, logs.
RESERVED_DESCRIPTORS = 512


def default_max_connections() -> int:
    """As many connections as the process's descriptor limit leaves room for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, soft - RESERVED_DESCRIPTORS)


def guarded_protocol(
    header_timeout_s: float, body_timeout_s: float, max_connections: int
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with these guards (passed as `uvicorn.run(http=...)`)."""

    class GuardedProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.abort()  # refused at once: the descriptor is freed now
                return
            self._arm(header_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(header_timeout_s)  # the next request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if self._expects_body():
                self._arm(body_timeout_s)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._arm(body_timeout_s)

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _expects_body(self) -> bool:
            headers = dict(self.headers)
            length = headers.get(b"content-length", b"0")
            return headers.get(b"transfer-encoding") is not None or length not in (b"", b"0")

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` that guard against slow and idle clients."""
    limit = settings.max_connections or default_max_connections()
    return {
        "http": guarded_protocol(settings.header_timeout_s, settings.body_timeout_s, limit),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
    }
