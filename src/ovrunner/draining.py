"""SIGTERM as Kubernetes and load balancers expect it: readiness goes 503 at once, the server
keeps listening while in-flight requests finish (at most `shutdown_grace_s`), new requests are
refused with 503 and `Retry-After` (a balancer retries them on another replica), then it exits.
A second SIGTERM, or Ctrl-C, exits at once.

uvicorn alone closes its listening socket at the first signal: a balancer that has not yet
seen the replica leave would get connection errors, and the readiness probe could not say why.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from ovrunner.errors import ShuttingDownError
from ovrunner.security import send_error

log = logging.getLogger(__name__)

# Probes and scrapes keep answering while draining: they tell the state, they are not work.
PROBE_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})


class Drain:
    """The server's draining state, shared by the ASGI guard, the readiness probe and the
    uvicorn server."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: float | None = None
        self.active = 0  # requests in flight, probes aside

    @property
    def draining(self) -> bool:
        return self.since is not None

    def start(self) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.info("draining: %d requests in flight, at most %.0f s", self.active, self.grace_s)

    def done(self) -> bool:
        assert self.since is not None
        return self.active == 0 or time.monotonic() - self.since >= self.grace_s


class DrainGuard:
    """Counts the requests in flight; while draining, refuses new ones (probes aside)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await send_error(scope, send, ShuttingDownError(
                "the server is shutting down; send the request again (another replica, or "
                "this one once it is back)"))  # fmt: skip
            return
        self.drain.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.active -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining at the first SIGTERM before it shuts down."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self.drain.draining:
            self.drain.start()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain.draining and not self.should_exit and self.drain.done():
            self.should_exit = True
        return await super().on_tick(counter)
