"""Access and input limits: the API key, the loopback-by-default bind, the Host check for
requests from web pages, and the body cap.

The guards are plain ASGI middleware so they act before any handler reads a byte of the
body. Their refusals are the error object of the route's dialect, like every other error.

A server on loopback without a key is reachable by any page open in the user's browser. Two
ways in, and what closes them: DNS rebinding (a hostile name that resolves to 127.0.0.1, so
the page is "same origin" with the server) sends that name as `Host`, which `HostGuard`
refuses; a cross-site "simple" request (a form POST of `text/plain` shaped like JSON) cannot
set `Content-Type: application/json`, and bodies of any other type are refused with a 415
(`routes.body`). No CORS headers are sent unless origins are allowlisted, so other origins
cannot read answers either. With a key set, the key is the guard: a page cannot send it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ovrunner.errors import (
    AuthenticationError,
    Dialect,
    HostNotAllowedError,
    OvrunnerError,
    RequestTooLargeError,
    error_body,
)

# Routes that answer without a key: liveness probes must not need secrets, and the web page
# (which holds no data; it asks for the key and sends it on every API call) must load first.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/"})
PAGE_PREFIX = "/ui/"


def needs_key(path: str, open_paths: frozenset[str] = OPEN_PATHS) -> bool:
    return path not in open_paths and not path.startswith(PAGE_PREFIX)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve beyond this machine without an API key."""
    if not is_loopback(host) and not api_key:
        raise OvrunnerError(
            f"refusing to bind {host}: serving beyond loopback needs an API key "
            "(--api-key, OVRUNNER_API_KEY or api_key_file)"
        )


async def send_error(scope: Scope, send: Send, error: OvrunnerError) -> None:
    body = json.dumps(error_body(error, Dialect.of(scope["path"]))).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    if isinstance(error, AuthenticationError):
        headers.append((b"www-authenticate", b'Bearer realm="ovrunner"'))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyGuard:
    """Every route but the probes (`/healthz`, `/livez`, `/readyz`), the page's files and, with
    `metrics_open`, `/metrics` needs `Authorization: Bearer KEY`, or `x-api-key: KEY` as
    Anthropic's clients send it (compared in constant time). Without a configured key the
    guard is not installed at all."""

    def __init__(self, app: ASGIApp, api_key: str, metrics_open: bool = False) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()
        # /metrics holds counts and names only; scrapers that send no key (the Gateway API
        # Inference Extension's endpoint picker) may be let in by the operator.
        self._open = OPEN_PATHS | {"/metrics"} if metrics_open else OPEN_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(scope["path"], self._open):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"")
        if b"x-api-key" in headers and not given:
            given = b"Bearer " + headers[b"x-api-key"]
        if not hmac.compare_digest(given, self._expected):
            message = "missing API key" if not given else "invalid API key"
            await send_error(scope, send, AuthenticationError(
                f"{message}: send Authorization: Bearer <key>"))  # fmt: skip
            return
        await self.app(scope, receive, send)


# The routes whose own bounds allow larger bodies than the generic cap: a batch of embedding
# inputs or rerank documents, bounded in inputs and tokens (`embedding_max_inputs`, `_tokens`).
ENCODER_PATHS = ("/v1/embeddings", "/api/embed", "/api/embeddings", "/v1/rerank", "/rerank")
AUDIO_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")
# Room in an audio upload's body for the form's other fields and part headers.
FORM_OVERHEAD_BYTES = 64 * 1024
# Body bytes a token of an encoder input may take: a token is a few characters, each up to 6
# bytes in JSON (`\u4e2d`), or an integer id and a comma.
BYTES_PER_TOKEN = 16


def encoder_body_bytes(max_inputs: int, max_tokens: int) -> int:
    """The body cap of the encoder routes: what their own bounds allow, with room for JSON."""
    return max_tokens * BYTES_PER_TOKEN + max_inputs * BYTES_PER_TOKEN + 4096


class BodyLimit:
    """Caps request bodies at `max_bytes` (`encoder_bytes` on the encoder routes and
    `audio_bytes` on the audio routes, whichever is larger, so a request within a route's own
    bounds never meets a smaller generic cap): at once from Content-Length, and by counting
    the bytes received, so chunked uploads cannot get past it."""

    def __init__(self, app: ASGIApp, max_bytes: int, encoder_bytes: int = 0,
                 audio_bytes: int = 0) -> None:  # fmt: skip
        self.app = app
        self.max_bytes = max_bytes
        self.encoder_bytes = max(max_bytes, encoder_bytes)
        self.audio_bytes = max(max_bytes, audio_bytes + FORM_OVERHEAD_BYTES)

    def limit(self, path: str) -> int:
        if path.endswith(ENCODER_PATHS):
            return self.encoder_bytes
        return self.audio_bytes if path.endswith(AUDIO_PATHS) else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", "")).rstrip("/")
        limit = self.limit(path)
        too_large = RequestTooLargeError(f"the request body exceeds the limit of {limit} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_error(scope, send, too_large)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large  # rendered as a 413 by the app's error handler
            return message

        await self.app(scope, counted, send)


def host_name(header: bytes) -> str:
    """The name in a Host header, without its port: `[::1]:8080` -> `::1`."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class HostGuard:
    """Refuses (403) a request whose Host is not the bind address, a loopback name or an
    allowlisted host; installed only while no API key is set. A request without a Host header
    cannot come from a browser and passes."""

    def __init__(self, app: ASGIApp, bind_host: str, allowed_hosts: list[str]) -> None:
        self.app = app
        self._allowed = {bind_host.lower().strip("[]"), *(h.lower() for h in allowed_hosts)}

    def allows(self, name: str) -> bool:
        return name in self._allowed or is_loopback(name) or name.endswith(".localhost")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host")
            if header is not None and not self.allows(host_name(header)):
                await send_error(scope, send, HostNotAllowedError(
                    f"the Host {header.decode('latin-1')[:100]!r} is not this server's: "
                    "add it to allowed_hosts, or set an API key"))  # fmt: skip
                return
        await self.app(scope, receive, send)
