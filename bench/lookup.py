"""Worker jobs with and without prompt lookup, side by side on one server (SmolLM2).

Each built-in job that copies from its input (`summary`, `memory_candidate`) runs on a
3,000-character input twice per round: as a preset that decodes plainly and as one with
`prompt_lookup = true` (the model's prompt-lookup runner), in alternating order. Greedy, so
the answers are compared too; tokens/s is completion tokens over the job's generate time.

    python -m bench.lookup [--rounds 3]

Writes bench/results/lookup.json and bench/results/lookup.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from tests.support.server import ServerProcess

from ovrunner.jobs import JobPresets

RESULTS = Path("bench/results")
JOBS = ("summary", "memory_candidate")

# About 3,000 characters of meeting notes: names, dates and figures a summary repeats.
NOTES = " ".join(
    f"On {day}, the {team} team met in room {room} to review the {topic}. {person} reported "
    f"that the {topic} was {state} and proposed to revisit it on {later} at {hour}."
    for day, team, room, topic, person, state, later, hour in [
        ("Monday", "finance", 4, "quarterly budget", "Alice", "on track", "Thursday", "3pm"),
        ("Tuesday", "platform", 7, "database migration", "Bob", "two weeks late", "Friday", "10am"),
        ("Wednesday", "design", 2, "onboarding flow", "Chen", "ready for testing", "Monday", "11am"),
        ("Thursday", "support", 9, "ticket backlog", "Dana", "down to 40 tickets", "Tuesday", "2pm"),
        ("Friday", "security", 5, "access review", "Emil", "missing two sign-offs", "Wednesday", "9am"),
        ("Monday", "sales", 3, "renewal pipeline", "Fatima", "at 80 percent of target", "Thursday", "4pm"),
        ("Tuesday", "hiring", 6, "hiring plan", "Goran", "approved for three roles", "Friday", "1pm"),
        ("Wednesday", "legal", 8, "vendor contract", "Hana", "waiting on the vendor", "Monday", "3pm"),
        ("Thursday", "data", 1, "reporting pipeline", "Ivo", "failing every night", "Tuesday", "8am"),
        ("Friday", "office", 10, "move to the new floor", "Jana", "set for the 14th", "Thursday", "noon"),
        ("Monday", "mobile", 11, "app release", "Karl", "blocked by review", "Wednesday", "5pm"),
        ("Tuesday", "research", 12, "user interviews", "Lena", "half done", "Friday", "10am"),
        ("Wednesday", "finance", 4, "travel policy", "Alice", "rewritten", "Tuesday", "3pm"),
        ("Thursday", "platform", 7, "on-call rota", "Bob", "short of two people", "Monday", "9am"),
        ("Friday", "design", 2, "brand refresh", "Chen", "out for comments", "Thursday", "2pm"),
        ("Monday", "support", 9, "help centre", "Dana", "missing ten articles", "Friday", "11am"),
    ]
)[:3000]  # fmt: skip


def presets_file(directory: Path) -> Path:
    """Each job twice: `<job>` decoding plainly and `<job>_lookup` with prompt lookup."""
    builtin = JobPresets.load()
    lines = []
    for job in JOBS:
        preset = builtin.get(job).model_dump(by_alias=True, exclude_none=True)
        preset.pop("name")
        preset.pop("aliases", None)
        for name, lookup in ((job, False), (f"{job}_lookup", True)):
            lines.append(f"[jobs.{name}]")
            for key, value in {**preset, "prompt_lookup": lookup}.items():
                lines.append(f"{key} = {json.dumps(value)}" if not isinstance(value, dict)
                             else f"{key} = {_inline(value)}")  # fmt: skip
    path = directory / "jobs.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _inline(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return json.dumps(value)


def _common_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def run(base_url: str, job: str) -> dict[str, object]:
    body = httpx.post(f"{base_url}/exp/v1/worker/generate", json={"job": job, "input": NOTES},
                      timeout=300).json()  # fmt: skip
    tokens = body["usage"]["completion_tokens"]
    return {"text": body["text"], "tokens": tokens,
            "tok_s": tokens / (body["timing_ms"]["generate"] / 1000)}  # fmt: skip


def lookup_jobs(rounds: int) -> dict[str, object]:
    """Each job of `JOBS`, plain and with prompt lookup, `rounds` pairs on one server."""
    store = Path(tempfile.mkdtemp(prefix="ovrunner-lookup-"))
    server = ServerProcess(store, "--preload", "--jobs-file", str(presets_file(store)))
    server.wait_ready()
    report: dict[str, object] = {"input_chars": len(NOTES), "rounds": rounds, "jobs": {}}
    try:
        for job in JOBS:
            pair = (job, f"{job}_lookup")
            for name in pair:
                run(server.base_url, name)  # loads the runner, warms its caches
            runs: dict[str, list[dict[str, object]]] = {name: [] for name in pair}
            for round_ in range(rounds):
                for name in pair if round_ % 2 == 0 else reversed(pair):
                    runs[name].append(run(server.base_url, name))
            plain, lookup = runs[job], runs[f"{job}_lookup"]
            speed = [float(b["tok_s"]) / float(a["tok_s"]) for a, b in zip(plain, lookup)]  # type: ignore[arg-type]
            report["jobs"][job] = {  # type: ignore[index]
                "plain_tok_s": round(statistics.median(float(r["tok_s"]) for r in plain), 1),  # type: ignore[arg-type]
                "lookup_tok_s": round(statistics.median(float(r["tok_s"]) for r in lookup), 1),  # type: ignore[arg-type]
                "paired_speedups": [round(s, 2) for s in speed],
                "speedup": round(statistics.median(speed), 2),
                "same_answer": [a["text"] == b["text"] for a, b in zip(plain, lookup)],
                # Where the answers part (they can, at a near-tie: the model scores several
                # candidates at once, and the last bits of its logits differ from one by one).
                "common_prefix_chars": [
                    _common_prefix(str(a["text"]), str(b["text"])) for a, b in zip(plain, lookup)
                ],
                "answer_chars": [len(str(r["text"])) for r in plain],
                "tokens": [r["tokens"] for r in plain],
            }
            print(job, json.dumps(report["jobs"][job]), flush=True)  # type: ignore[index]
        metrics = httpx.get(f"{server.base_url}/metrics").text
        report["metrics"] = [line for line in metrics.splitlines()
                             if line.startswith("ovrunner_assisted_")]  # fmt: skip
    finally:
        server.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = lookup_jobs(args.rounds)
    (RESULTS / "lookup.json").write_text(json.dumps(report, indent=2))
    lines = [f"Prompt lookup on worker jobs, {report['input_chars']}-character input, SmolLM2-135M, "
             f"greedy, {args.rounds} paired rounds", "",
             "| job | plain tok/s | prompt lookup tok/s | speedup (paired median) | same answer | answers agree for (chars) |",
             "| --- | ---: | ---: | ---: | --- | --- |"]  # fmt: skip
    for job, row in report["jobs"].items():  # type: ignore[attr-defined]
        lines.append(f"| {job} | {row['plain_tok_s']} | {row['lookup_tok_s']} | {row['speedup']} "
                     f"({', '.join(map(str, row['paired_speedups']))}) | "
                     f"{sum(row['same_answer'])}/{len(row['same_answer'])} | "
                     f"{min(row['common_prefix_chars'])} of {max(row['answer_chars'])} |")  # fmt: skip
    (RESULTS / "lookup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
