"""Separating a reasoning model's thinking (`<think>...</think>`) from its answer.

The thinking is recognized only at the start of the answer (after blanks), as the models
write it, so an answer that merely mentions the tag is left alone. Where the chat template
itself opens the thinking (its generation prompt ends with the open tag), the answer starts
inside it. A thinking cut short by `max_tokens` is still thinking, never content.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from ovrunner.tools.text import BLANK, held_prefix


@dataclass(frozen=True)
class ReasoningTags:
    open: str = "<think>"
    close: str = "</think>"


class _State(Enum):
    START = auto()
    THINKING = auto()
    ANSWER = auto()


class ReasoningSplitter:
    def __init__(self, tags: ReasoningTags, *, opened: bool = False) -> None:
        self._tags = tags
        self._state = _State.THINKING if opened else _State.START
        self._buffer = ""
        self._strip_answer = opened  # the blanks after </think> are not the answer's

    def feed(self, text: str) -> tuple[str, str]:
        """(reasoning, content) that this text decides."""
        self._buffer += text
        reasoning = content = ""
        while self._buffer:
            if self._state is _State.START:
                stripped = self._buffer.lstrip(BLANK)
                if stripped.startswith(self._tags.open):
                    self._buffer = stripped[len(self._tags.open) :]
                    self._state = _State.THINKING
                elif not stripped or self._tags.open.startswith(stripped):
                    break  # could still be the open tag
                else:
                    self._state = _State.ANSWER
            elif self._state is _State.THINKING:
                before, found, after = self._buffer.partition(self._tags.close)
                if found:
                    reasoning += before
                    self._buffer = after
                    self._state = _State.ANSWER
                    self._strip_answer = True
                    continue
                held = held_prefix(self._buffer, self._tags.close)
                reasoning += self._buffer[: len(self._buffer) - held]
                self._buffer = self._buffer[len(self._buffer) - held :]
                break
            else:
                if self._strip_answer:
                    self._buffer = self._buffer.lstrip(BLANK)
                    if not self._buffer:
                        break
                    self._strip_answer = False
                content += self._buffer
                self._buffer = ""
        return reasoning, content

    def finish(self) -> tuple[str, str]:
        buffer, self._buffer = self._buffer, ""
        if self._state is _State.THINKING:
            return buffer, ""
        return "", "" if self._strip_answer else buffer
