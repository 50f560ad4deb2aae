"""The built-in web page: `GET /` and its static files under `/ui/`, shipped in the package.

The page is plain HTML, CSS and ES modules (`ovrunner/web/`), with two vendored libraries
(marked for Markdown, DOMPurify for sanitizing), so nothing is built at install time and
nothing is fetched from a network. It talks to the same API as every client, with the same
key: the page itself needs none (`security.PAGE_PATHS`), since it holds no data.

Model output is untrusted, so every page response carries a Content-Security-Policy that
allows scripts from this server only: no inline script, no eval, no plugins, no framing.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])  # fmt: skip

PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # An upgrade of ovrunner ships new files under the same names.
    "cache-control": "no-cache",
}


class PageFiles(StaticFiles):
    """The page's static files, each with the page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def routes() -> list[BaseRoute]:
    files = PageFiles(directory=str(resources.files("ovrunner") / "web"))

    async def index(request: Request) -> Response:
        return await files.get_response("index.html", request.scope)

    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Mount("/ui", app=files, name="ui"),
    ]
