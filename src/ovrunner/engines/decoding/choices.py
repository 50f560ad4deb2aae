"""From a step's new token ids to text deltas, for every request that advanced in it.

Runs on the event loop, once per pipeline step: the windows of all streams that advanced are
decoded in one batch (see `detokenize.decode_batch`), then each request receives one
`DeltaBatch` in its outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovrunner.engines.base import FinishReason, GenerationDelta, TokenLogprob
from ovrunner.engines.decoding.detokenize import DecodeMany, IncrementalDetokenizer, decode_batch


# What a step brings, as any engine that steps many streams reports it (the OpenVINO engine's
# `SequenceOutput` and `InFlightUpdate` are these): the decoder needs no engine's own types.
class StepOutput(Protocol):
    @property
    def sequence_id(self) -> int: ...
    @property
    def token_ids(self) -> list[int]: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def log_probs(self) -> list[float] | None: ...


class StepUpdate(Protocol):
    @property
    def outputs(self) -> Sequence[StepOutput]: ...
    @property
    def finished(self) -> bool: ...
    @property
    def error(self) -> Exception | None: ...


class Stream(Hashable, Protocol):
    """A request in flight: its decoding state, and where its deltas go."""

    @property
    def choices(self) -> RequestChoices: ...
    @property
    def outbox(self) -> asyncio.Queue[Any]: ...


@dataclass(frozen=True)
class DeltaBatch:
    deltas: list[GenerationDelta]
    finished: bool


@dataclass(eq=False)
class _Choice:
    index: int
    detokenizer: IncrementalDetokenizer = field(default_factory=IncrementalDetokenizer)
    done: bool = False


class RequestChoices:
    """The choices of one request (n of them), keyed by the pipeline's sequence ids."""

    def __init__(self, prompt_tokens: int, n: int = 1) -> None:
        self.prompt_tokens = prompt_tokens
        self.n = n
        self._by_sequence: dict[int, _Choice] = {}
        self._unseen: list[_Choice] = []  # choices whose sequence never produced a token
        self._rebound: list[_Choice] = []  # choices waiting for a new sequence id

    def choice(self, sequence_id: int) -> _Choice:
        choice = self._by_sequence.get(sequence_id)
        if choice is None:
            index = len(self._by_sequence)
            choice = self._rebound.pop(0) if self._rebound else _Choice(index)
            self._by_sequence[sequence_id] = choice
        return choice

    def generated_ids(self) -> tuple[int, ...]:
        """The tokens of the one choice so far (for a request of n = 1)."""
        choices = [*self._by_sequence.values(), *self._rebound]
        return choices[0].detokenizer.token_ids if choices else ()

    def rebind(self) -> None:
        """Let the choices continue on new sequence ids: a request resumed on a new engine
        process gets new ids there, and its next tokens extend the same choices."""
        self._rebound = [*self._rebound, *self._by_sequence.values()]
        self._by_sequence = {}

    def open_choices(self) -> list[_Choice]:
        """Choices not yet closed, including those that never produced a token (a stop
        string matched at once): each of the n choices must get a final delta."""
        seen = len(self._by_sequence) + len(self._unseen) + len(self._rebound)
        self._unseen.extend(_Choice(index) for index in range(seen, self.n))
        choices = [*self._by_sequence.values(), *self._rebound, *self._unseen]
        return [c for c in choices if not c.done]


def publish_step(items: Sequence[tuple[Stream, StepUpdate]], decode_many: DecodeMany) -> None:
    """Turn one step's updates into deltas and put them in each job's outbox.

    Each job's `choices` are its `RequestChoices`. A request that finishes without a reason on
    some sequence (the pipeline stopped it) closes that choice as "stop", so every choice
    gets a final delta.
    """
    work: list[_Work] = []
    delivered: list[tuple[Stream, StepUpdate]] = []
    for job, update in items:
        if update.error is not None:
            job.outbox.put_nowait(update.error)
            continue
        delivered.append((job, update))
        choices = job.choices
        entries: dict[_Choice, _Work] = {}
        for output in update.outputs:
            choice = choices.choice(output.sequence_id)
            entry = entries.setdefault(choice, _Work(job, choice))
            entry.token_ids += output.token_ids
            entry.reason = output.finish_reason or entry.reason
            if output.log_probs is not None:
                entry.log_probs = (entry.log_probs or []) + output.log_probs
        if update.finished:
            for choice in choices.open_choices():
                entry = entries.setdefault(choice, _Work(job, choice))
                entry.reason = entry.reason or FinishReason.STOP.value
        work.extend(entries.values())

    texts = decode_batch(
        [(w.choice.detokenizer, w.token_ids, w.reason is not None) for w in work], decode_many
    )
    token_texts = _decode_tokens([w for w in work if w.log_probs is not None], decode_many)
    deltas: dict[Stream, list[GenerationDelta]] = {}
    for entry, text in zip(work, texts):
        choice, reason = entry.choice, entry.reason
        choice.done = choice.done or reason is not None
        if text or reason or entry.log_probs:
            deltas.setdefault(entry.job, []).append(
                GenerationDelta(
                    index=choice.index,
                    text=text,
                    prompt_tokens=entry.job.choices.prompt_tokens,
                    completion_tokens=choice.detokenizer.token_count,
                    finish_reason=FinishReason(reason) if reason else None,
                    logprobs=tuple(
                        TokenLogprob(token, logprob)
                        for token, logprob in zip(
                            token_texts.get(id(entry), ()), entry.log_probs or ()
                        )  # fmt: skip
                    ),
                )
            )
    for job, update in delivered:
        job.outbox.put_nowait(DeltaBatch(deltas.get(job, []), update.finished))


@dataclass(eq=False)
class _Work:
    """What one step brought one choice."""

    job: Stream
    choice: _Choice
    token_ids: list[int] = field(default_factory=list)
    reason: str | None = None
    log_probs: list[float] | None = None


def _decode_tokens(work: list[_Work], decode_many: DecodeMany) -> dict[int, list[str]]:
    """Each token on its own, for the logprobs of the choices that asked for them."""
    windows = [[token] for entry in work for token in entry.token_ids]
    texts = decode_many(windows) if windows else []
    by_entry: dict[int, list[str]] = {}
    start = 0
    for entry in work:
        by_entry[id(entry)] = texts[start : start + len(entry.token_ids)]
        start += len(entry.token_ids)
    return by_entry


def coalesce(deltas: list[GenerationDelta]) -> list[GenerationDelta]:
    """Merge deltas of the same choice that queued up while the consumer was busy."""
    merged: dict[int, GenerationDelta] = {}
    for delta in deltas:
        previous = merged.get(delta.index)
        if previous is None:
            merged[delta.index] = delta
            continue
        merged[delta.index] = GenerationDelta(
            index=delta.index,
            text=previous.text + delta.text,
            prompt_tokens=delta.prompt_tokens,
            completion_tokens=delta.completion_tokens,
            finish_reason=delta.finish_reason or previous.finish_reason,
            logprobs=previous.logprobs + delta.logprobs,
        )
    return list(merged.values())
