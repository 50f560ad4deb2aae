"""From a step's new token ids to text deltas, for every request that advanced in it.

Runs on the event loop, once per pipeline step: the windows of all streams that advanced are
decoded in one tokenizer call (see `detokenize.decode_batch`), then each request receives one
`StepDeltas` in its outbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ovrunner.engines.base import FinishReason, GenerationDelta
from ovrunner.engines.detokenize import DecodeMany, IncrementalDetokenizer, decode_batch
from ovrunner.engines.stepping import BatchJob, StepUpdate


@dataclass(frozen=True)
class StepDeltas:
    deltas: list[GenerationDelta]
    finished: bool


@dataclass(eq=False)
class _Choice:
    index: int
    detokenizer: IncrementalDetokenizer = field(default_factory=IncrementalDetokenizer)
    done: bool = False


class RequestChoices:
    """The choices of one request (n of them), keyed by the pipeline's sequence ids."""

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self._by_sequence: dict[int, _Choice] = {}

    def choice(self, sequence_id: int) -> _Choice:
        choice = self._by_sequence.get(sequence_id)
        if choice is None:
            choice = self._by_sequence[sequence_id] = _Choice(len(self._by_sequence))
        return choice

    def open_choices(self) -> list[_Choice]:
        return [c for c in self._by_sequence.values() if not c.done]


def publish_step(items: list[tuple[BatchJob, StepUpdate]], decode_many: DecodeMany) -> None:
    """Turn one step's updates into deltas and put them in each job's outbox.

    Each job's `context` is its `RequestChoices`. A request that finishes without a reason on
    some sequence (the pipeline stopped it) closes that choice as "stop", so every choice
    gets a final delta.
    """
    work: list[tuple[BatchJob, _Choice, list[int], str | None]] = []
    delivered: list[tuple[BatchJob, StepUpdate]] = []
    for job, update in items:
        if update.error is not None:
            job.outbox.put_nowait(update.error)
            continue
        delivered.append((job, update))
        choices: RequestChoices = job.context
        entries: dict[_Choice, tuple[list[int], str | None]] = {}
        for output in update.outputs:
            choice = choices.choice(output.sequence_id)
            ids, reason = entries.get(choice, ([], None))
            entries[choice] = (ids + output.token_ids, output.finish_reason or reason)
        if update.finished:
            for choice in choices.open_choices():
                ids, reason = entries.get(choice, ([], None))
                entries[choice] = (ids, reason or FinishReason.STOP.value)
        work.extend((job, choice, ids, reason) for choice, (ids, reason) in entries.items())

    texts = decode_batch([(c.detokenizer, ids, r is not None) for _, c, ids, r in work], decode_many)
    deltas: dict[BatchJob, list[GenerationDelta]] = {}
    for (job, choice, _, reason), text in zip(work, texts):
        choice.done = choice.done or reason is not None
        if text or reason:
            deltas.setdefault(job, []).append(
                GenerationDelta(
                    index=choice.index,
                    text=text,
                    prompt_tokens=job.context.prompt_tokens,
                    completion_tokens=choice.detokenizer.token_count,
                    finish_reason=FinishReason(reason) if reason else None,
                )
            )
    for job, update in delivered:
        job.outbox.put_nowait(StepDeltas(deltas.get(job, []), update.finished))


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
        )
    return list(merged.values())
