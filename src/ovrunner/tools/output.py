"""A request's answer, choice by choice, split into reasoning, content and tool calls.

Applied to the engine's text deltas on the server's side of every front end, so a
dialect that renders `reasoning` and `tool_calls` gets them parsed once, the same way.
A choice that called a tool and stopped ends with `finish_reason` `tool_calls`.
"""

from __future__ import annotations

from dataclasses import replace

from ovrunner.engines.base import FinishReason, GenerationDelta
from ovrunner.tools.call_parser import Parsed, ToolCallParser
from ovrunner.tools.formats import ChatFormat
from ovrunner.tools.reasoning import ReasoningSplitter
from ovrunner.tools.spec import ToolSpec


class _ChoiceParser:
    def __init__(self, chat: ChatFormat, spec: ToolSpec | None, separate_reasoning: bool):
        self._thinking = (
            ReasoningSplitter(chat.reasoning, opened=chat.reasoning_opened)
            if chat.reasoning is not None and separate_reasoning
            else None
        )
        self._calls = (
            ToolCallParser(
                chat.tools.layout,
                max_calls=None if spec.parallel else 1,
                names=frozenset(t.name for t in spec.callable_tools()),
            )
            if spec is not None and spec.calling
            else None
        )

    def parse(self, delta: GenerationDelta) -> GenerationDelta:
        reasoning, content = "", delta.text
        ending = delta.finish_reason is not None
        if self._thinking is not None:
            reasoning, content = self._thinking.feed(content)
            if ending:
                more_reasoning, more_content = self._thinking.finish()
                reasoning, content = reasoning + more_reasoning, content + more_content
        parsed = Parsed(content=content)
        if self._calls is not None:
            parsed = self._calls.feed(content)
            if ending:
                rest = self._calls.finish()
                parsed.content += rest.content
                for call in rest.calls:
                    parsed.add_call(call)
        reason = delta.finish_reason
        if reason is FinishReason.STOP and self._calls is not None and self._calls.calls:
            reason = FinishReason.TOOL_CALLS
        return replace(delta, text=parsed.content, reasoning=reasoning,
                       tool_calls=tuple(parsed.calls), finish_reason=reason)  # fmt: skip


class OutputParser:
    """Parses each choice of one request; `None` from `for_request` when nothing needs it."""

    def __init__(self, chat: ChatFormat, spec: ToolSpec | None, separate_reasoning: bool):
        self._make = lambda: _ChoiceParser(chat, spec, separate_reasoning)
        self._choices: dict[int, _ChoiceParser] = {}

    @classmethod
    def for_request(cls, chat: ChatFormat, spec: ToolSpec | None,
                    separate_reasoning: bool) -> OutputParser | None:  # fmt: skip
        calling = spec is not None and spec.calling
        thinking = chat.reasoning is not None and separate_reasoning
        return cls(chat, spec, separate_reasoning) if calling or thinking else None

    def parse(self, delta: GenerationDelta) -> GenerationDelta:
        choice = self._choices.get(delta.index)
        if choice is None:
            choice = self._choices[delta.index] = self._make()
        return choice.parse(delta)
