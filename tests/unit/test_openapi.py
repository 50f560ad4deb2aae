"""The OpenAPI document covers every route the app serves."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route
from starlette.testclient import TestClient

from ovrunner.app import create_app
from ovrunner.settings import Settings


def test_every_route_is_in_the_document(tmp_path: Path) -> None:
    app = create_app(Settings(store_dir=tmp_path))
    served = {(method.lower(), route.path.replace(":path}", "}"))
              for route in app.routes if isinstance(route, Route)
              for method in (route.methods or set()) - {"HEAD"}}  # fmt: skip
    with TestClient(app, base_url="http://localhost") as client:
        document = client.get("/openapi.json").json()
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served == documented
    chat = document["paths"]["/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert "messages" in document["components"]["schemas"]["ChatCompletionRequest"]["properties"]
