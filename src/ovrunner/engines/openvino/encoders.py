"""Encoder runners on the `openvino` engine: embeddings (`TextEmbeddingPipeline`) and
reranking (`TextRerankPipeline`), each pipeline in an encoder process of its own
(`encoder_process.py`).

Each input is tokenized first, with the pipeline's own tokenizer, so an input longer than the
model's window is refused (or cut only when the request asks) and usage is exact. Pipeline
calls run in a worker thread (they release the GIL) and one at a time: on a CPU one call
already uses every core. Embedding requests that arrive while a call runs are coalesced into
the next call, taking a share of every waiting request so a large one cannot hold back small
ones; on this machine one call of 32 inputs embedded about 1.5x the inputs per second of 32
calls of one (docs/benchmarks.md).

A hard crash of OpenVINO in a pipeline ends its encoder process, never the server: the call
it was making is made once more on a new process, then fails alone with the cause.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ovrunner.engines.base import (
    EmbeddingRequest,
    Embeddings,
    LoadConfig,
    Mode,
    ModelRef,
    RerankRequest,
    RerankScores,
    Runner,
)
from ovrunner.engines.encoder_files import EmbeddingConfig
from ovrunner.engines.openvino.encoder_process import EncoderProcess, EncoderSpec
from ovrunner.engines.stats import RunnerStats
from ovrunner.errors import (
    ContextLengthExceededError,
    EngineError,
    InvalidValueError,
    ModelLoadFailedError,
    UnsupportedParameterError,
)

log = logging.getLogger(__name__)

# Inputs per pipeline call: enough to reach the batch's speed-up, small enough that a waiting
# request's turn comes soon.
MAX_BATCH = 64
# Documents per reranking call (the pipeline's `top_n` is fixed when it is built).
MAX_DOCUMENTS = 4096


@dataclass(frozen=True)
class EncoderStats(RunnerStats):
    calls: int  # pipeline calls made
    inputs: int  # texts (or query-document pairs) encoded
    engine_pid: int | None = None  # the encoder process
    restarts: int = 0


class EncoderRunner(Runner):
    """What both encoder runners share: tokenizing for the window check and usage, the
    worker thread, and the counters."""

    engine_name = "openvino"

    def __init__(self, model: ModelRef, device: str, pipeline: EncoderProcess, tokenizer: Any,
                 window: int) -> None:  # fmt: skip
        self.model_id = model.id
        self.mode = model.mode
        self.device = device
        self.context_window = window
        self._pipeline = pipeline
        self._tokenizer = tokenizer
        self._running = 0
        self._waiting = 0
        self._calls = 0
        self._inputs = 0
        self._closed = False

    def _token_counts(self, texts: list[str], pairs_with: str | None = None) -> list[int]:
        if not texts:
            return []
        if pairs_with is None:
            encoded = self._tokenizer.encode(texts)
        else:
            encoded = self._tokenizer.encode([pairs_with] * len(texts), texts)
        return [int(n) for n in encoded.attention_mask.data.sum(axis=1)]

    async def _checked_tokens(self, texts: list[str], truncate: bool, param: str,
                              limit: int | None, pairs_with: str | None = None) -> int:  # fmt: skip
        """Tokens the request costs; refuses an input over the window unless `truncate`."""
        counts = await asyncio.to_thread(self._token_counts, texts, pairs_with)
        for i, count in enumerate(counts):
            if count > self.context_window and not truncate:
                raise ContextLengthExceededError(
                    f"{param}[{i}] is {count} tokens; the model {self.model_id!r} reads at most "
                    f"{self.context_window} per input (shorten it, or send truncate: true to "
                    "cut it to the window)",
                    param=f"{param}[{i}]",
                )
        total = sum(min(c, self.context_window) for c in counts)
        if limit is not None and total > limit:
            raise InvalidValueError(
                f"the request is {total} tokens; at most {limit} are allowed per request "
                "(send fewer inputs)",
                param=param,
            )
        return total

    async def _call(self, method: str, *args: Any) -> Any:
        if self._closed:
            raise EngineError(f"the runner of {self.model_id!r} was unloaded")
        self._calls += 1
        return await asyncio.to_thread(self._pipeline.call, method, *args)

    @property
    def failure(self) -> Exception | None:
        return self._pipeline.failure

    def stats(self) -> EncoderStats:
        return EncoderStats(admitted=self._running + self._waiting, running=self._running,
                            waiting=self._waiting, calls=self._calls, inputs=self._inputs,
                            engine_pid=self._pipeline.pid, restarts=self._pipeline.restarts)  # fmt: skip

    def close(self) -> None:
        self._closed = True
        self._pipeline.close()


@dataclass(eq=False)
class _Job:
    """One embedding request's texts, taken into pipeline calls a share at a time."""

    texts: list[str]
    done: asyncio.Future[list[list[float]]]
    vectors: list[list[float]] = field(default_factory=list)
    taken: int = 0  # texts handed to a call so far

    @property
    def remaining(self) -> int:
        return len(self.texts) - self.taken


class EmbeddingRunner(EncoderRunner):
    def __init__(self, model: ModelRef, device: str, pipeline: Any, tokenizer: Any,
                 config: EmbeddingConfig) -> None:  # fmt: skip
        super().__init__(model, device, pipeline, tokenizer, config.window)
        self.dimensions = config.dimensions
        self._vocab_size = len(tokenizer.get_vocab_vector())
        self._empty = [int(t) for t in tokenizer.encode([""]).input_ids.data[0]]
        self._queue: deque[_Job] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if request.dimensions is not None and request.dimensions != self.dimensions:
            # No sentence-transformers file says a model was trained to be cut (Matryoshka),
            # and cutting one that was not gives vectors that mean nothing.
            raise UnsupportedParameterError(
                f"the model {self.model_id!r} makes {self.dimensions}-wide vectors and cannot "
                f"make {request.dimensions}-wide ones (omit dimensions, or send {self.dimensions})",
                param="dimensions",
            )
        texts = list(request.texts)
        if request.token_ids is not None:
            texts = await asyncio.to_thread(self._texts_of, request.token_ids)
        tokens = await self._checked_tokens(texts, request.truncate, "input", request.max_tokens)
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._waiting += 1
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        try:
            vectors = await job.done
        finally:
            if job in self._queue:  # the client left before its texts were all taken
                self._queue.remove(job)
                self._waiting -= 1
        return Embeddings(vectors, tokens)

    async def _drain(self) -> None:
        while self._queue:
            share = max(1, MAX_BATCH // len(self._queue))
            parts: list[tuple[_Job, int]] = []
            room = MAX_BATCH
            for job in list(self._queue):
                take = min(share, job.remaining, room)
                parts.append((job, take))
                room -= take
                if room == 0:
                    break
            texts: list[str] = []
            for job, take in parts:
                texts.extend(job.texts[job.taken : job.taken + take])
                job.taken += take
                if job.remaining == 0:
                    self._queue.remove(job)
                    self._waiting -= 1
            jobs = {job for job, _ in parts}
            self._running += len(jobs)
            try:
                vectors = await self._call("embed_documents", texts)
            except EngineError as exc:
                for job in jobs:
                    if job in self._queue:
                        self._queue.remove(job)
                        self._waiting -= 1
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            finally:
                self._running -= len(jobs)
            self._inputs += len(texts)
            start = 0
            for job, take in parts:
                job.vectors.extend(vectors[start : start + take])
                start += take
                if job.remaining == 0 and not job.done.done():
                    job.done.set_result(job.vectors)

    def _texts_of(self, token_ids: tuple[tuple[int, ...], ...]) -> list[str]:
        """The text of each token-id input, refused unless the model's tokenizer encodes that
        text back to the same ids (with or without the special tokens it adds): the pipeline
        embeds text, so ids that do not round-trip would be embedded as something else."""
        texts = []
        for i, ids in enumerate(token_ids):
            bad = next((t for t in ids if not 0 <= t < self._vocab_size), None)
            if bad is not None:
                raise InvalidValueError(
                    f"input[{i}] holds the token id {bad}, outside the model's vocabulary "
                    f"of {self._vocab_size}",
                    param=f"input[{i}]",
                )
            text = self._tokenizer.decode(list(ids), skip_special_tokens=True)
            again = [int(t) for t in self._tokenizer.encode([text]).input_ids.data[0]]
            if list(ids) not in (again, self._core(again)):
                raise InvalidValueError(
                    f"input[{i}] is not a token sequence of the model {self.model_id!r}'s own "
                    "tokenizer (it does not encode back to the same ids); send the text instead",
                    param=f"input[{i}]",
                )
            texts.append(text)
        return texts

    def _core(self, ids: list[int]) -> list[int]:
        """`ids` without the special tokens the tokenizer adds around every input."""
        empty = self._empty
        for split in range(len(empty) + 1):
            head, tail = empty[:split], empty[split:]
            if ids[:split] == head and (not tail or ids[-len(tail) :] == tail):
                return ids[split : len(ids) - len(tail)]
        return ids


class RerankRunner(EncoderRunner):
    def __init__(self, model: ModelRef, device: str, pipeline: Any, tokenizer: Any,
                 window: int) -> None:  # fmt: skip
        super().__init__(model, device, pipeline, tokenizer, window)
        self._lock = asyncio.Lock()

    async def rerank(self, request: RerankRequest) -> RerankScores:
        documents = list(request.documents)
        tokens = await self._checked_tokens(
            documents, request.truncate, "documents", request.max_tokens, pairs_with=request.query
        )
        self._waiting += 1
        admitted = False
        try:
            async with self._lock:
                self._waiting -= 1
                admitted = True
                self._running += 1
                try:
                    ranked = await self._call("rerank", request.query, documents)
                finally:
                    self._running -= 1
        finally:
            if not admitted:  # cancelled while waiting its turn
                self._waiting -= 1
        self._inputs += len(documents)
        scores = [0.0] * len(documents)
        for index, score in ranked:
            scores[index] = float(score)
        return RerankScores(scores, tokens)


def load_encoder(model: ModelRef, config: LoadConfig, properties: dict[str, Any]) -> Runner:
    """Open the embedding or reranking pipeline of `model` (an IR directory) in its process."""
    import openvino_genai as genai

    from ovrunner.engines.encoder_files import embedding_config, encoder_window

    try:
        tokenizer = genai.Tokenizer(str(model.path), INFERENCE_NUM_THREADS=1)
    except RuntimeError as exc:
        raise ModelLoadFailedError(f"could not load model {model.id!r}: {exc}") from exc
    spec = EncoderSpec(model, config.device, properties, top_n=MAX_DOCUMENTS)
    process = EncoderProcess(spec, crash_limit=config.crash_limit,
                             crash_window_s=config.crash_window_s)  # fmt: skip
    if model.mode is Mode.EMBEDDING:
        return EmbeddingRunner(model, config.device, process, tokenizer,
                               embedding_config(model.path))  # fmt: skip
    return RerankRunner(model, config.device, process, tokenizer, encoder_window(model.path))
