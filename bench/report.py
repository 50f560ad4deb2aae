"""The suite's report: targets checked against the issue's goals, markdown and the plot."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _row(rows: list[dict[str, object]], system: str, level: int) -> dict[str, object] | None:
    return next((r for r in rows if r["system"] == system and r["concurrency"] == level), None)


def targets(rows: list[dict[str, object]], paired: dict[int, list[float]],
            prefix: dict[str, object], restart: dict[str, object],
            lookup: dict[str, object] | None = None) -> list[dict[str, object]]:  # fmt: skip
    """The performance issue's targets, each a ratio from this one run."""

    def paired_median(level: int) -> float | None:
        return round(statistics.median(paired[level]), 3) if paired.get(level) else None

    def ratio(a: dict[str, object] | None, b: dict[str, object] | None, key: str) -> float | None:
        if a is None or b is None or not a[key] or not b[key]:
            return None
        return round(float(a[key]) / float(b[key]), 3)  # type: ignore[arg-type]

    def versus_peer(level: int, key: str = "tok_s") -> float | None:
        return ratio(_row(rows, "ovrunner", level), _row(rows, "llama-server", level), key)

    summary = ((lookup or {}).get("jobs") or {}).get("summary")  # type: ignore[attr-defined]
    checks = [
        ("1 stream ovrunner / llama-server tok/s", versus_peer(1), ">=", 1.15),
        ("1 stream HTTP / raw tok/s (paired median)", paired_median(1), ">=", 0.97),
        ("8 streams ovrunner / llama-server tok/s", versus_peer(8), ">=", 2.5),
        ("16 streams ovrunner / llama-server tok/s", versus_peer(16), ">=", 3.0),
        ("32 streams ovrunner / llama-server tok/s", versus_peer(32), ">=", 3.5),
        ("16 streams TTFT p90, ovrunner / llama-server", versus_peer(16, "ttft_p90"), "<=", 0.5),
        ("summary job, prompt lookup / plain tok/s", summary["speedup"] if summary else None, ">=", 1.5),
        ("warm restart / cold start", restart["warm_over_cold"], "<=", 0.5),
        ("prefix cache: first / later TTFT", prefix["speedup"], ">=", 2.0),
    ]  # fmt: skip
    return [{"target": name, "value": value, "goal": f"{op} {goal}",
             "met": None if value is None else (value >= goal if op == ">=" else value <= goal)}
            for name, value, op, goal in checks]  # fmt: skip


def markdown(report: dict[str, object]) -> str:
    lines = [f"SmolLM2-135M Q4_1, CPU (2 cores), max_tokens={report['max_tokens']}, greedy, "
             f"end-of-sequence suppressed; tok/s is the median of {report['rounds']} rounds for raw, "
             "ovrunner and llama-server (one for llama-cpp-python)", "",
             "| system | streams | tok/s | TTFT p50 s | TTFT p90 s | ITL p50 ms | ITL p95 ms | ok | failed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in report["rows"]:  # type: ignore[attr-defined]
        lines.append(f"| {r['system']} | {r['concurrency']} | {r['tok_s']} | {r['ttft_p50']} | "
                     f"{r['ttft_p90']} | {r['itl_p50_ms']} | {r['itl_p95_ms']} | {r['completed']} | "
                     f"{r['failed']} |")  # fmt: skip
    lines += ["", "| target | value | goal | met |", "| --- | ---: | --- | --- |"]
    for t in report["targets"]:  # type: ignore[attr-defined]
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | {met} |")
    lines += ["", f"Paired HTTP / raw ratios by level: {json.dumps(report['paired_http_over_raw'])}",
              f"Prefix cache: {json.dumps(report['prefix_cache'])}",
              f"Restart: {json.dumps(report['restart'])}",
              f"Prompt lookup on worker jobs: {json.dumps(report.get('lookup', {}).get('jobs'))}",
              f"Resident memory of the server and its engine process, MiB (KV cache bounded by "
              f"`kv_cache_gb`, 1 GB): {json.dumps(report['memory'])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, object]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    figure, (speed, ttft) = plt.subplots(1, 2, figsize=(10, 4))
    for system in dict.fromkeys(str(r["system"]) for r in rows):
        mine = [r for r in rows if r["system"] == system]
        levels = [r["concurrency"] for r in mine]
        speed.plot(levels, [r["tok_s"] for r in mine], marker="o", label=system)
        ttft.plot(levels, [r["ttft_p90"] for r in mine], marker="o", label=system)
    speed.set(xlabel="concurrent streams", ylabel="output tokens/s", title="Aggregate throughput")
    ttft.set(xlabel="concurrent streams", ylabel="seconds", title="Time to first token, p90",
             yscale="log")  # fmt: skip
    for axes in (speed, ttft):
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
