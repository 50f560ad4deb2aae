"""Fuzzing every route from /openapi.json with schemathesis on a live server (tiny model):
no answer is a 5xx, and every error body is the OpenAI error object."""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.support.server import ServerProcess


@schemathesis.check
def openai_error_shape(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    if response.status_code < 400:
        return
    body = json.loads(response.content)
    if case.path.startswith("/api/"):  # Ollama's shape on Ollama's routes
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        return
    if case.path.startswith("/v1/messages"):  # Anthropic's shape on Anthropic's routes
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        return
    assert set(body) >= {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["code"], str)


def test_no_route_fails_or_answers_out_of_shape(tiny_server: ServerProcess) -> None:
    # schemathesis' pytest plugin does not run on this pytest; its Python API does.
    schema = schemathesis.openapi.from_url(f"{tiny_server.base_url}/openapi.json")
    # Pulling reaches for the network, deleting would remove the fuzzed model itself, and
    # unloading would only make the next request load it again.
    schema = (schema.exclude(path="/models/pull").exclude(path="/api/pull")
              .exclude(method="DELETE").exclude(path="/engines/unload"))  # fmt: skip
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        # derandomize: the same examples every run, so CI never turns on a new random case;
        # run with a fresh seed by hand (--hypothesis-seed) to look for new ones.
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None, derandomize=True)  # fmt: skip
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=[not_a_server_error, openai_error_shape], timeout=60)

        fuzz()
    assert tiny_server.process.poll() is None  # still serving after the fuzzing
    requests = tiny_server.log().count("ovrunner.access")
    print(f"{requests} requests")
    assert requests > 10 * len(operations)
