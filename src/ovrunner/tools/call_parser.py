"""Splitting a model's answer, as it streams, into content and tool calls.

Each model family writes calls its own way (`formats.py` names them with a `CallLayout`);
one streaming parser reads them all. It never lets markup reach the content: text that could
be the start of a call marker is held back until the next characters decide, however the
tokens split it. Whitespace around calls is dropped. A whole answer is parsed by feeding it
at once, so a stream's joined deltas always equal the whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto

from ovrunner.tools.json_call import CallScanner
from ovrunner.tools.spec import ToolCallDelta, new_call_id
from ovrunner.tools.text import BLANK, held_prefix


@dataclass(frozen=True)
class CallLayout:
    """How a family writes its calls.

    `opener` starts a call (kept as part of the call's JSON when `opener_is_json`); `closer`
    ends one; `in_list` puts the calls of one opener in a JSON array (Mistral);
    `separators` may stand between calls that have no closer (Llama 3's `;`); a first
    non-blank character in `leading` opens calls at the very start of the answer (the
    families whose opener is a special token, which decoding drops).
    """

    opener: str
    closer: str | None = None
    opener_is_json: bool = False
    in_list: bool = False
    separators: str = ""
    leading: str = ""
    dropped: tuple[str, ...] = ()  # markers removed wherever they appear (<|python_tag|>)


@dataclass
class Parsed:
    """What a piece of the answer turned out to be."""

    content: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)

    def add_call(self, delta: ToolCallDelta) -> None:
        last = self.calls[-1] if self.calls else None
        if last is not None and last.index == delta.index and delta.id is None:
            self.calls[-1] = ToolCallDelta(last.index, last.arguments + delta.arguments,
                                           last.id, last.name)  # fmt: skip
        else:
            self.calls.append(delta)


# Markdown code fences a small model may wrap its bare call in (Qwen2.5-Coder-0.5B in int8
# answered "What is the weather in Paris?" with the call as a ```json block).
FENCES = ("```json\n", "```\n")
FENCE_CLOSER = "```"


class _State(Enum):
    START = auto()  # nothing but blanks so far
    TEXT = auto()
    LIST = auto()  # after an opener of listed calls: `[` or a call's `{` next
    CALL = auto()
    AFTER_CALL = auto()
    MALFORMED = auto()  # markup that is not a call: given back as content


class ToolCallParser:
    """`names`, the offered tools: a call opened by a bare object at the start (`leading`)
    is one only if it names one of them, else it is content (a JSON answer)."""

    def __init__(
        self, layout: CallLayout, max_calls: int | None = None,
        names: frozenset[str] | None = None,
    ) -> None:  # fmt: skip
        self.layout = layout
        self._max_calls = max_calls
        self._names = names
        self._bare = False  # the call being read was opened by `leading`, with no opener
        self._fenced = False  # ... inside a code fence, whose closer is still to come
        self._state = _State.START
        self._buffer = ""  # received, not yet decided
        self._pending_blank = ""  # blanks held until what follows them is known
        self._raw_call = ""  # the markup of the call being read, for MALFORMED
        self._scanner = CallScanner()
        self._index = -1
        self._name: str | None = None
        self._held_arguments: list[str] = []  # arguments seen before the call's name
        self._just_called = False
        self.calls = 0

    # -- public --------------------------------------------------------------------------

    def feed(self, text: str) -> Parsed:
        out = Parsed()
        self._buffer += text
        for marker in self.layout.dropped:
            self._buffer = self._buffer.replace(marker, "")
        while self._buffer and self._advance(out):
            pass
        return out

    def finish(self) -> Parsed:
        """The end of the answer: whatever was held is decided now."""
        out = Parsed()
        buffer, self._buffer = self._buffer, ""
        if self._state in (_State.START, _State.TEXT):
            self._content(out, buffer)
        elif self._state is _State.MALFORMED or (self._state in (_State.LIST, _State.CALL)
                                                  and self._name is None):  # fmt: skip
            self._content(out, self._raw_call + buffer)
        if self.calls == 0 and self._pending_blank:
            out.content += self._pending_blank
        self._pending_blank = ""
        return out

    # -- states --------------------------------------------------------------------------

    def _advance(self, out: Parsed) -> bool:
        """Use what the buffer can decide; False when it must wait for more text."""
        state = self._state
        if state is _State.START:
            return self._at_start(out)
        if state is _State.TEXT:
            return self._in_text(out)
        if state is _State.LIST:
            return self._in_list(out)
        if state is _State.CALL:
            return self._in_call(out)
        if state is _State.AFTER_CALL:
            return self._after_call(out)
        self._raw_call += self._buffer  # MALFORMED: to the closer, or to the end
        self._buffer = ""
        closer = self.layout.closer
        if closer is not None and closer in self._raw_call:
            raw, _, rest = self._raw_call.partition(closer)
            self._content(out, raw + closer)
            self._raw_call, self._buffer, self._state = "", rest, _State.TEXT
            return True
        return False

    def _at_start(self, out: Parsed) -> bool:
        stripped = self._buffer.lstrip(BLANK)
        if not stripped:
            return False
        opener = self.layout.opener
        if any(m.startswith(stripped) and len(stripped) < len(m) for m in self._markers()):
            return False  # perhaps a marker: decided once it is whole
        fence = ""
        if self._calls_allowed() and self.layout.leading and stripped[0] == "`":
            fence = next((f for f in FENCES if stripped.startswith(f)), "")
            if not fence and any(f.startswith(stripped) for f in FENCES):
                return False  # perhaps a fence: decided once its line is whole
            if fence and not stripped[len(fence) :].strip(BLANK):
                return False  # what the fence holds is still to come
        body = stripped[len(fence) :].lstrip(BLANK)
        if (
            self._calls_allowed()
            and body[0] in self.layout.leading
            and not (body.startswith(opener))
        ):
            self._pending_blank = ""
            self._raw_call = stripped[: len(stripped) - len(body)]  # the fence, if any
            self._buffer = body
            self._bare = True
            self._fenced = bool(fence)
            self._open(list_opened=False)
            return True
        self._state = _State.TEXT
        return True

    def _in_text(self, out: Parsed) -> bool:
        opener = self.layout.opener
        found = self._buffer.find(opener) if self._calls_allowed() else -1
        if found < 0:
            markers = self._markers() if self._calls_allowed() else self.layout.dropped
            held = max((held_prefix(self._buffer, m) for m in markers), default=0)
            cut = len(self._buffer) - held
            self._content(out, self._buffer[:cut])
            self._buffer = self._buffer[cut:]
            return False
        self._content(out, self._buffer[:found])
        rest = self._buffer[found + len(opener) :]
        self._buffer = opener + rest if self.layout.opener_is_json else rest
        # Blanks before the opener go with the call, and back to the content if it is none.
        self._raw_call = self._pending_blank + ("" if self.layout.opener_is_json else opener)
        self._pending_blank = ""
        self._open(list_opened=not self.layout.in_list)
        return True

    def _open(self, *, list_opened: bool) -> None:
        """A call begins: in a list (after `[`) or as a lone object."""
        self._state = _State.CALL if (list_opened or not self.layout.in_list) else _State.LIST
        self._new_call()

    def _new_call(self) -> None:
        self._scanner = CallScanner()
        self._name = None
        self._held_arguments = []

    def _in_list(self, out: Parsed) -> bool:
        stripped = self._buffer.lstrip(BLANK)
        self._raw_call += self._buffer[: len(self._buffer) - len(stripped)]
        self._buffer = stripped
        if not stripped:
            return False
        if stripped[0] == "[":
            self._raw_call += "["
            self._buffer = stripped[1:]
        self._state = _State.CALL
        return True

    def _in_call(self, out: Parsed) -> bool:
        events, used = self._scanner.feed(self._buffer)
        self._raw_call += self._buffer[:used]
        self._buffer = self._buffer[used:]
        if events.name is not None and self._name is None:
            if self._bare and self._names is not None and events.name not in self._names:
                self._state = _State.MALFORMED
                return True
            self._name = events.name
            self._index += 1
            self.calls += 1
            out.add_call(ToolCallDelta(self._index, "", new_call_id(), events.name))
            self._held_arguments, events.arguments = [], self._held_arguments + events.arguments
        arguments = "".join(events.arguments)
        if arguments:
            if self._name is None:
                self._held_arguments.append(arguments)
            else:
                out.add_call(ToolCallDelta(self._index, arguments))
        if self._scanner.invalid or (self._scanner.done and self._name is None):
            self._state = _State.MALFORMED
            return True
        if self._scanner.done:
            if not self._scanner.saw_arguments:
                out.add_call(ToolCallDelta(self._index, "{}"))
            self._raw_call = ""
            self._just_called = True
            self._state = _State.AFTER_CALL
            return True
        return False

    def _after_call(self, out: Parsed) -> bool:
        layout = self.layout
        stripped = self._buffer.lstrip(BLANK + layout.separators)
        if not stripped:
            self._buffer = ""
            return False
        if self._fenced:  # the fence's closer goes with its calls
            if FENCE_CLOSER.startswith(stripped) and len(stripped) < len(FENCE_CLOSER):
                self._buffer = stripped
                return False
            if stripped.startswith(FENCE_CLOSER):
                self._fenced = False
                self._buffer = stripped[len(FENCE_CLOSER) :]
                return True
            if stripped[0] in layout.leading and self._calls_allowed():
                self._buffer = stripped  # another call in the same fence
                self._new_call()
                self._state = _State.CALL
                return True
        if layout.closer is not None:
            if stripped.startswith(layout.closer):
                self._buffer = stripped[len(layout.closer) :]
                self._state = _State.TEXT
                return True
            if layout.closer.startswith(stripped):
                self._buffer = stripped
                return False
            self._buffer, self._state = stripped, _State.TEXT  # no closer: text goes on
            return True
        if layout.in_list and stripped[0] in ",]":
            self._buffer = stripped[1:]
            if stripped[0] == ",":
                self._new_call()
                self._state = _State.CALL
            else:
                self._state = _State.TEXT
            return True
        if stripped[0] == "{" and not layout.in_list and self._calls_allowed():
            self._buffer = stripped
            self._new_call()
            self._state = _State.CALL
            return True
        self._buffer, self._state = stripped, _State.TEXT
        return True

    # -- helpers -------------------------------------------------------------------------

    def _markers(self) -> tuple[str, ...]:
        return (self.layout.opener, *self.layout.dropped)

    def _calls_allowed(self) -> bool:
        return self._max_calls is None or self.calls < self._max_calls

    def _content(self, out: Parsed, text: str) -> None:
        """Content, with runs of blanks held until non-blank text follows them."""
        if not text:
            return
        if self._just_called:  # blanks right after a call are not the content's
            text = text.lstrip(BLANK)
            if not text:
                return
            self._just_called = False
        if not text.strip(BLANK):
            self._pending_blank += text
            return
        body = text.rstrip(BLANK)
        out.content += self._pending_blank + body
        self._pending_blank = text[len(body) :]
