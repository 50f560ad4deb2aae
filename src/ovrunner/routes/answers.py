"""From engine deltas to OpenAI answers: whole responses, stream chunks, usage and logprobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from pydantic import BaseModel
from sse_starlette import EventSourceResponse
from starlette.requests import Request

from ovrunner.engines.base import GenerationDelta, TokenLogprob
from ovrunner.protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    ChatCompletionTokenLogprob,
    ChoiceDelta,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    ContentChunkTemplate,
    Usage,
)
from ovrunner.routes.chat_tools import delta_calls
from ovrunner.routes.serving import Generation, unless_disconnected
from ovrunner.streaming import sse_response


@dataclass
class CollectedCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


@dataclass
class CollectedChoice:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    calls: dict[int, CollectedCall] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reasoning(self) -> str | None:
        return "".join(self.reasoning_parts) if self.reasoning_parts else None

    def add(self, delta: GenerationDelta) -> None:
        self.parts.append(delta.text)
        self.logprobs.extend(delta.logprobs)
        if delta.reasoning:
            self.reasoning_parts.append(delta.reasoning)
        for call in delta.tool_calls:
            if call.id is not None:
                self.calls[call.index] = CollectedCall(call.id, call.name or "")
            self.calls[call.index].arguments.append(call.arguments)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason.value

    def tool_calls(self) -> list[tuple[str, str, str]]:
        return [(c.id, c.name, "".join(c.arguments)) for _, c in sorted(self.calls.items())]


@dataclass
class Collected:
    choices: list[CollectedChoice]
    usage: Usage


async def collect(generation: Generation, n: int) -> Collected:
    """A whole non-streamed answer: the text, finish reason and logprobs of each choice."""
    choices = [CollectedChoice() for _ in range(n)]
    async with aclosing(generation.deltas) as deltas:
        async for delta in deltas:
            choices[delta.index].add(delta)
    return Collected(choices, generation.tally.usage())


async def collect_whole(request: Request, generation: Generation, n: int) -> Collected:
    """The whole answer; the generation is closed (its lease released) however this ends."""
    try:
        return await unless_disconnected(request, collect(generation, n))
    finally:
        await generation.aclose()


def streamed(request: Request, generation: Generation,
             chunks: AsyncIterator[BaseModel | str]) -> EventSourceResponse:  # fmt: skip
    """`chunks` as SSE; the generation is closed once the response is over, however it ends."""
    grace = request.app.state.settings.shutdown_grace_s
    return sse_response(chunks, grace, on_close=generation.aclose)


def chat_logprobs(logprobs: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            ChatCompletionTokenLogprob(
                token=t.token, logprob=t.logprob, bytes=list(t.token.encode())
            )
            for t in logprobs
        ]
    )


def completion_logprobs(
    logprobs: list[TokenLogprob] | tuple[TokenLogprob, ...], offset: int = 0
) -> CompletionLogprobs:
    offsets = []
    for t in logprobs:
        offsets.append(offset)
        offset += len(t.token)
    return CompletionLogprobs(
        tokens=[t.token for t in logprobs],
        token_logprobs=[t.logprob for t in logprobs],
        text_offset=offsets,
    )


async def completion_chunks(
    body: CompletionRequest,
    generation: Generation,
    completion_id: str,
    created: int,
) -> AsyncIterator[Completion]:
    offsets: dict[int, int] = {}
    async with aclosing(generation.deltas) as deltas:
        async for delta in deltas:
            logprobs = None
            if body.logprobs is not None:
                logprobs = completion_logprobs(delta.logprobs, offsets.get(delta.index, 0))
                offsets[delta.index] = offsets.get(delta.index, 0) + len(delta.text)
            finish_reason = delta.finish_reason.value if delta.finish_reason else None
            choice = CompletionChoice(index=delta.index, text=delta.text,
                                      finish_reason=finish_reason, logprobs=logprobs)  # fmt: skip
            yield Completion(id=completion_id, created=created, model=body.model, choices=[choice])
    if body.include_usage:
        yield Completion(id=completion_id, created=created, model=body.model, choices=[],
                         usage=generation.tally.usage())  # fmt: skip


async def chat_chunks(
    body: ChatCompletionRequest,
    generation: Generation,
    completion_id: str,
    created: int,
) -> AsyncIterator[ChatCompletionChunk | str]:
    def chunk(choices: list[ChatCompletionChunkChoice], usage: Usage | None = None):
        return ChatCompletionChunk(
            id=completion_id, created=created, model=body.model, choices=choices, usage=usage
        )

    yield chunk(
        [
            ChatCompletionChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))
            for i in range(body.n)
        ]
    )
    template = ContentChunkTemplate(completion_id, created, body.model)
    async with aclosing(generation.deltas) as deltas:
        async for delta in deltas:
            finish_reason = delta.finish_reason.value if delta.finish_reason else None
            if not (delta.text or delta.tool_calls or delta.reasoning or finish_reason
                    or delta.logprobs):  # fmt: skip
                continue  # markup held back by the parser: nothing to send yet
            if body.logprobs or delta.tool_calls or delta.reasoning:
                choice = ChatCompletionChunkChoice(
                    index=delta.index,
                    delta=ChoiceDelta(
                        content=delta.text or None,
                        reasoning_content=delta.reasoning or None,
                        tool_calls=delta_calls(delta.tool_calls),
                    ),  # fmt: skip
                    finish_reason=finish_reason,
                    logprobs=chat_logprobs(delta.logprobs) if body.logprobs else None,
                )
                yield chunk([choice])
            else:
                yield template.render(delta.index, delta.text, finish_reason)
    if body.include_usage:
        yield chunk([], generation.tally.usage())
