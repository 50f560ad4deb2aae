"""Prometheus collectors, one registry per app, and the access log.

Counters and histograms are updated where the work happens; gauges that describe the present
(queue depth, loaded runners, busy counters) are read when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ovrunner.engines.stats import BatchingStats
from ovrunner.lifecycle import RunnerState

if TYPE_CHECKING:
    from ovrunner.busy import BusyCounter
    from ovrunner.lifecycle import Lifecycle

access_log = logging.getLogger("ovrunner.access")

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2.5)


ASSISTED_PROPOSED = "Candidate tokens proposed by prompt lookup or a draft model"
# Each step of an assisted request yields the accepted candidates plus one token of its own.
ASSISTED_ACCEPTED = "Proposed candidate tokens the model accepted"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ovrunner_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)  # fmt: skip
        self.request_seconds = Histogram(
            "ovrunner_request_duration_seconds", "HTTP request latency, to the last byte",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.prompt_tokens = Counter("ovrunner_prompt_tokens", "Prompt tokens processed",
                                     ["model"], registry=self.registry)  # fmt: skip
        self.generated_tokens = Counter("ovrunner_generated_tokens", "Tokens generated",
                                        ["model"], registry=self.registry)  # fmt: skip
        self.encoder_inputs = Counter(
            "ovrunner_encoder_inputs", "Inputs embedded, or documents reranked",
            ["model", "mode"], registry=self.registry,
        )  # fmt: skip
        self.encoder_tokens = Counter(
            "ovrunner_encoder_tokens", "Tokens of embedding inputs and reranked pairs",
            ["model", "mode"], registry=self.registry,
        )  # fmt: skip
        self.audio_seconds = Counter(
            "ovrunner_audio_seconds", "Seconds of audio transcribed or translated",
            ["model"], registry=self.registry,
        )  # fmt: skip
        self.real_time_factor = Histogram(
            "ovrunner_transcription_real_time_factor",
            "Wall time of a transcription over its audio's length (below 1: faster than real time)",
            ["model"], buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 4),
            registry=self.registry,
        )  # fmt: skip
        self.time_to_first_token = Histogram(
            "ovrunner_time_to_first_token_seconds", "From admission to the first generated text",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.inter_token_seconds = Histogram(
            "ovrunner_inter_token_latency_seconds",
            "Time between a request's generated tokens, counted per token",
            ["model"], buckets=_TOKEN_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue_wait_seconds = Histogram(
            "ovrunner_queue_wait_seconds",
            "From a request's arrival to its runner taking it (a load, or a full queue, waited for)",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.model_load_seconds = Histogram(
            "ovrunner_model_load_seconds", "Time to load a model into a runner",
            ["model"], buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160), registry=self.registry,
        )  # fmt: skip

    def observe_encoded(self, model: str, mode: str, inputs: int, tokens: int) -> None:
        self.encoder_inputs.labels(model, mode).inc(inputs)
        self.encoder_tokens.labels(model, mode).inc(tokens)

    def observe_transcribed(self, model: str, audio_seconds: float, wall_seconds: float) -> None:
        self.audio_seconds.labels(model).inc(audio_seconds)
        if audio_seconds > 0:
            self.real_time_factor.labels(model).observe(wall_seconds / audio_seconds)

    def observe_usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generated_tokens.labels(model).inc(completion_tokens)

    def token_meter(self, model: str) -> Callable[[int, float | None], None]:
        """Count a request's tokens as they stream: `meter(tokens, gap)`, the labelled series
        looked up once per request, not once per delta.

        Inter-token latency is counted per token, as vLLM counts it: the first of the
        tokens that arrive together waited `gap` since the request's previous token (None
        for a request's first token, whose wait is its time to first token), the others
        arrived with it, 0 s later. So a request of n tokens counts n - 1 gaps, whatever
        its deltas held, and the gaps add up to its time from first token to last."""
        generated = self.generated_tokens.labels(model)
        gaps = self.inter_token_seconds.labels(model)

        def meter(tokens: int, gap: float | None) -> None:
            generated.inc(tokens)
            if gap is not None:
                gaps.observe(gap)
            for _ in range(tokens - 1):
                gaps.observe(0.0)

        return meter

    def observe_load(self, model: str, seconds: float) -> None:
        self.model_load_seconds.labels(model).observe(seconds)

    def watch(self, lifecycle: Lifecycle, counters: Callable[[], Iterable[BusyCounter]]) -> None:
        self.registry.register(_LiveCollector(lifecycle, counters))
        self.registry.register(_RouterGauges(lifecycle))


class _LiveCollector(Collector):
    def __init__(self, lifecycle: Lifecycle, counters: Callable[[], Iterable[BusyCounter]]) -> None:
        self._lifecycle = lifecycle
        self._counters = counters

    def collect(self) -> Iterable[Any]:
        loaded = GaugeMetricFamily("ovrunner_loaded_runners", "Runners loaded or loading",
                                   labels=["state"])  # fmt: skip
        # `decoding` tells a model's runners apart (its prompt-lookup runner runs beside it).
        queue = GaugeMetricFamily("ovrunner_queue_depth", "Requests admitted to a runner",
                                  labels=["model", "engine", "decoding", "kind"])  # fmt: skip
        cache = GaugeMetricFamily("ovrunner_kv_cache_usage_ratio",
                                  "Share of a runner's KV cache in use",
                                  labels=["model", "decoding"])  # fmt: skip
        cache_bytes = GaugeMetricFamily("ovrunner_kv_cache_bytes",
                                        "Size of a runner's KV cache",
                                        labels=["model", "decoding"])  # fmt: skip
        weights = GaugeMetricFamily("ovrunner_runner_weights_bytes",
                                    "Size of the model files a runner loaded",
                                    labels=["model", "engine", "decoding"])  # fmt: skip
        resident = GaugeMetricFamily("ovrunner_runner_resident_bytes",
                                     "Resident memory of a runner's engine process",
                                     labels=["model", "engine", "decoding"])  # fmt: skip
        assisted = [CounterMetricFamily(f"ovrunner_assisted_{kind}_tokens", text,
                                        labels=["model", "decoding"])
                    for kind, text in (("proposed", ASSISTED_PROPOSED), ("accepted", ASSISTED_ACCEPTED))]  # fmt: skip
        states = dict.fromkeys(RunnerState, 0)
        for slot in self._lifecycle.slots():
            states[slot.state] += 1
            if slot.runner is None:
                continue
            stats = slot.runner.stats()
            labels = [slot.model.id, slot.model.decoding]
            holds = slot.holdings(stats)
            weights.add_metric([slot.model.id, slot.engine, slot.model.decoding],
                               holds["weights_bytes"] or 0)  # fmt: skip
            if holds["process_resident_bytes"] is not None:
                resident.add_metric([slot.model.id, slot.engine, slot.model.decoding],
                                    holds["process_resident_bytes"])  # fmt: skip
            for kind in ("running", "waiting"):
                queue.add_metric([slot.model.id, slot.engine, slot.model.decoding, kind],
                                 getattr(stats, kind))  # fmt: skip
            if isinstance(stats, BatchingStats):
                cache.add_metric(labels, stats.cache_usage)
                cache_bytes.add_metric(labels, stats.kv_cache_bytes)
                if stats.assisted_steps:
                    assisted[0].add_metric(labels, stats.assisted_proposed)
                    assisted[1].add_metric(labels, stats.assisted_tokens - stats.assisted_steps)
        for state, count in states.items():
            loaded.add_metric([state.value], count)
        busy = GaugeMetricFamily("ovrunner_busy_counter_microseconds",
                                 "Busy-counter readings per counter", labels=["counter"])  # fmt: skip
        for counter in self._counters():
            try:
                busy.add_metric([counter.name], counter.read_us())
            except Exception:  # noqa: BLE001 - an absent device has no reading
                continue
        return [loaded, queue, busy, cache, cache_bytes, weights, resident, *assisted]


class _RouterGauges(Collector):
    """The gauges an LLM-aware router scrapes by name: the Kubernetes Gateway API Inference
    Extension's model server protocol (its endpoint picker, llm-d, KServe) names them as vLLM
    does. Per model (`model_name`), all its runners together: requests queued, requests
    running, and the share of KV cache in use (0..1, the fullest runner's)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle

    def collect(self) -> Iterable[Any]:
        waiting = GaugeMetricFamily("vllm:num_requests_waiting",
                                    "Requests waiting to be processed", labels=["model_name"])  # fmt: skip
        running = GaugeMetricFamily("vllm:num_requests_running",
                                    "Requests being processed", labels=["model_name"])  # fmt: skip
        cache = GaugeMetricFamily("vllm:kv_cache_usage_perc",
                                  "KV-cache usage; 1 means 100 percent", labels=["model_name"])  # fmt: skip
        totals: dict[str, list[float]] = {}
        for slot in self._lifecycle.slots():
            if slot.runner is None:
                continue
            stats = slot.runner.stats()
            total = totals.setdefault(slot.model.id, [0, 0, 0.0])
            total[0] += stats.waiting
            total[1] += stats.running
            if isinstance(stats, BatchingStats):
                total[2] = max(total[2], stats.cache_usage)
        for model, (queued, active, usage) in totals.items():
            waiting.add_metric([model], queued)
            running.add_metric([model], active)
            cache.add_metric([model], min(1.0, max(0.0, usage)))
        return [waiting, running, cache]


class AccessLog:
    """ASGI middleware: one log line and one metric sample per request, with method, path,
    status and duration only. Bodies (prompts, answers) are never read here."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            # Percent-encoded: a path with newlines or control characters cannot forge lines.
            path = quote(scope["path"], safe="/:@-._~!$&'()*+,;=")
            access_log.info("%s %s %d %.1f ms", scope["method"], path, status, seconds * 1000)
