"""The worker routes and `ovrunner job` against a real server on SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from ovrunner.jobs import JobPresets
from tests.integration.conftest import MODEL
from tests.support.cli import run_cli
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
    assert (
        body["timing_ms"]["generate"] > 0
        and body["timing_ms"]["total"] >= body["timing_ms"]["generate"]
    )
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


def test_summary_decodes_with_prompt_lookup_on_its_own_runner(server: ServerProcess) -> None:
    notes = (f"{ALERT} The on-call engineer, Priya Raman, moved the logs of db-2 to /mnt/archive "
             "at 14:05 and opened ticket OPS-4411. ") * 4  # fmt: skip
    response = post(server, "/exp/v1/worker/generate", {"job": "summary", "input": notes})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_worker_response(body, "summary")
    usage = body["usage"]
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    runners = httpx.get(f"{server.base_url}/engines/ps").json()["runners"]
    lookup = [r for r in runners if r["model"] == MODEL and r["decoding"] == "prompt_lookup"]
    assert len(lookup) == 1 and lookup[0]["stats"]["assisted_proposed"] > 0
    # SmolLM2 copies the notes' names and figures: some proposed tokens were accepted.
    metrics = httpx.get(f"{server.base_url}/metrics").text
    accepted = [line for line in metrics.splitlines()
                if line.startswith("ovrunner_assisted_accepted_tokens_total{")
                and 'decoding="prompt_lookup"' in line]  # fmt: skip
    assert accepted and float(accepted[0].rsplit(" ", 1)[1]) > 0
    # Two runners of one model: their series stay apart (a duplicate would break a scrape).
    series = [line.rsplit(" ", 1)[0] for line in metrics.splitlines() if not line.startswith("#")]
    assert len(series) == len(set(series))
    assert f'ovrunner_kv_cache_bytes{{decoding="prompt_lookup",model="{MODEL}"}}' in metrics
    # The chat routes keep decoding plainly, on the model's own runner.
    plain = [r for r in runners if r["model"] == MODEL and r["decoding"] == "plain"]
    assert len(plain) == 1


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
    assert health["model_path"] and health["cache_dir"]
    # The compile cache is for the GPU and NPU (on CPU it slowed loads): it exists once used.
    assert health["cache_exists"] is Path(health["cache_dir"]).is_dir()


ovrunner = run_cli


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


def test_a_counter_nobody_updates_fails_the_job(server: ServerProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    frozen = tmp_path / "npu_busy_time_us"
    frozen.write_text("1000\n")
    done = ovrunner("job", "--job", "title", "--input", ALERT, "--store-dir", str(server.store_dir),
                    "--busy-counter", "npu", "--npu-busy-path", str(frozen))  # fmt: skip
    assert done.returncode == 1
    body = json.loads(done.stdout)
    assert (
        body["text"]
        and body["npu_busy_delta_us"] == 0
        and body["busy_counter"] == "npu_busy_time_us"
    )
    assert body["error"]["code"] == "busy_counter_not_moved"


def test_256_new_tokens_is_the_edge(server: ServerProcess) -> None:
    body = {"job": "summary", "input": "x" * 6000, "max_new_tokens": 256}
    assert post(server, "/exp/v1/worker/generate", body).status_code == 200


SYNTHETIC_ALERTS = [
    ALERT,
    "Backup job nightly-db finished in 42 minutes with 0 errors.",
    "CPU temperature on node gpu-7 reached 91 C; fans at 100%.",
    "Certificate for api.example.test expires in 3 days.",
    "User login failed 12 times from 10.0.0.5 within one minute.",
    "Deployment of web v2.3.1 to staging succeeded.",
    "Memory usage of worker-3 is 99%; the OOM killer stopped process 4411.",
    "The weekly report was emailed to 14 recipients.",
    "Replication lag on db-replica-2 is 35 minutes and rising.",
    "Scheduled maintenance window starts Saturday 02:00 UTC.",
]
SYNTHETIC_CHATS = [
    CHAT,
    "User: My daughter's name is Ana and she starts school in September.",
    "User: I prefer tea over coffee. Assistant: Good to know.",
    "User: I work night shifts on weekdays, so please don't call before noon.",
    "User: My laptop is a 2019 ThinkPad running Fedora.",
    "User: I'm training for a marathon in April.",
    "User: Please remember I'm vegetarian. Assistant: Sure.",
    "User: Our team standup is at 9:30 every morning.",
    "User: I speak Portuguese and some German.",
    "User: The garage code is not something you should store. Assistant: Understood.",
]


@pytest.mark.parametrize(
    ("job", "text"),
    [("notification", t) for t in SYNTHETIC_ALERTS]
    + [("memory_candidate", t) for t in SYNTHETIC_CHATS],
)
def test_json_jobs_always_validate(server: ServerProcess, job: str, text: str) -> None:
    response = post(server, "/exp/v1/worker/generate", {"job": job, "input": text})
    assert response.status_code == 200, response.text
    jsonschema.validate(response.json()["json"], PRESETS.get(job).json_schema)


def test_logs_hold_no_inputs_or_outputs(server: ServerProcess) -> None:
    secret_in = "Zanzibar-orchid-7731 is the codename of the migration."
    worker = post(server, "/exp/v1/worker/generate", {"job": "summary", "input": secret_in}).json()
    chat = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=60, json={
        "model": MODEL, "messages": [{"role": "user", "content": secret_in}], "max_tokens": 24,
    }).json()  # fmt: skip
    outputs = [worker["text"], chat["choices"][0]["message"]["content"]]
    log = server.log()
    assert "POST /exp/v1/worker/generate" in log  # the access log is there
    for text in [secret_in, "Zanzibar", *[o for o in outputs if len(o) > 12]]:
        assert text not in log
