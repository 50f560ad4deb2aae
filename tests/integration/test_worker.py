"""The worker routes and `ovrunner job` against a real server on SmolLM2."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import jsonschema
import pytest

from ovrunner.jobs import JobPresets
from tests.integration.conftest import MODEL
from tests.support.server import ServerProcess

ALERT = "Disk /dev/sda1 is 97% full on host db-2; writes will fail within the hour."
CHAT = "User: I moved to Lisbon last month and I am allergic to peanuts. Assistant: Noted."
PRESETS = JobPresets.load()


def post(server: ServerProcess, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=120)


def assert_worker_response(body: dict, job: str) -> None:
    assert body["model"] == MODEL and body["device"] == "CPU" and body["job"] == job
    assert body["busy_counter"] == "process_cpu_time_us"
    assert body["busy_delta_us"] == body["busy_after_us"] - body["busy_before_us"] > 0
    assert body["timing_ms"]["generate"] > 0 and body["timing_ms"]["total"] >= body["timing_ms"]["generate"]
    assert body["cache_dir"]


def test_title_is_one_short_line(server: ServerProcess) -> None:
    response = post(server, "/exp/v1/worker/generate", {"job": "title", "input": ALERT})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_worker_response(body, "title")
    assert body["text"] and "\n" not in body["text"] and len(body["text"].split()) <= 8
    assert body["json"] is None


@pytest.mark.parametrize(
    ("path", "request_body", "job"),
    [("/exp/v1/worker/generate", {"job": "notification", "input": ALERT}, "notification"),
     ("/exp/v1/worker/condense-notification", {"input": ALERT}, "notification"),
     ("/exp/v1/worker/extract-memory-candidates", {"input": CHAT}, "memory_candidate"),
     ("/v1/worker/generate", {"job": "memory", "input": CHAT}, "memory_candidate")],
)  # fmt: skip
def test_json_jobs_validate_against_their_schema(
    server: ServerProcess, path: str, request_body: dict, job: str
) -> None:
    response = post(server, path, request_body)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_worker_response(body, job)
    jsonschema.validate(body["json"], PRESETS.get(job).json_schema)
    assert json.loads(body["text"]) == body["json"]


def test_max_new_tokens_bounds_the_answer(server: ServerProcess) -> None:
    body = post(server, "/exp/v1/worker/generate",
                {"job": "summary", "input": ALERT * 3, "max_new_tokens": 3}).json()  # fmt: skip
    assert 0 < len(body["text"].split()) <= 3


@pytest.mark.parametrize(
    ("request_body", "param"),
    [({"job": "title", "input": ""}, "input"), ({"job": "title", "input": "x" * 6001}, "input"),
     ({"job": "title", "input": "x", "max_new_tokens": 0}, "max_new_tokens"),
     ({"job": "title", "input": "x", "max_new_tokens": 257}, "max_new_tokens"),
     ({"job": "poem", "input": "x"}, "job"), ({"input": "x"}, "job"),
     ({"job": "title"}, "input"), ({"job": "title", "input": 5}, "input")],
)  # fmt: skip
def test_out_of_bounds_is_a_400(server: ServerProcess, request_body: dict, param: str) -> None:
    response = post(server, "/exp/v1/worker/generate", request_body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_healthz_has_the_worker_fields(server: ServerProcess) -> None:
    health = httpx.get(f"{server.base_url}/healthz").json()
    assert health["busy_counter"] == "process_cpu_time_us" and health["busy_time_us"] > 0
    assert health["max_input_chars"] == 6000
    assert health["jobs"] == ["memory_candidate", "notification", "summary", "title"]
    assert health["model_path"] and health["cache_dir"] and health["cache_exists"] is True


def ovrunner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovrunner.cli", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_job_cli_against_a_server(server: ServerProcess) -> None:
    done = ovrunner("job", "--job", "title", "--input", ALERT, "--url", server.base_url)
    assert done.returncode == 0, done.stderr
    assert_worker_response(json.loads(done.stdout), "title")
    refused = ovrunner("job", "--job", "title", "--input", "", "--url", server.base_url)
    assert refused.returncode != 0
    assert json.loads(refused.stdout)["error"]["param"] == "input"


def test_job_cli_in_process(server: ServerProcess) -> None:
    # The session server's store already holds the converted IR, so this load is quick.
    done = ovrunner("job", "--job", "notification", "--input", ALERT, "--max-new-tokens", "96",
                    "--store-dir", str(server.store_dir))  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert_worker_response(body, "notification")
    assert body["timing_ms"]["load"] > 0 and body["json"] is not None
