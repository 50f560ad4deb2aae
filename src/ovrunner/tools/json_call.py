"""Reading one tool call's JSON object as it streams in, a character at a time.

A call is an object such as `{"name": "get_weather", "arguments": {"city": "Paris"}}`
(Llama 3 names the second key `parameters`). The scanner reports the name once its string
is complete and the arguments' raw text as it arrives, so a stream can carry argument
fragments while the model still writes them; the fragments joined are the exact text of the
arguments object, which is also what a whole answer reports. Arguments given as a JSON string
(some models quote them) are reported once, decoded, when the string ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum, auto

ARGUMENT_KEYS = ("arguments", "parameters")
_WHITESPACE = " \t\r\n"


class _Phase(Enum):
    START = auto()  # before the object's `{`
    KEY = auto()  # expecting a key (or the end of the object)
    COLON = auto()
    VALUE_START = auto()
    VALUE = auto()
    AFTER_VALUE = auto()  # expecting `,` or `}`
    DONE = auto()
    INVALID = auto()


@dataclass
class ScanEvents:
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class CallScanner:
    """Scans one call object; `feed` returns what it learned and how many characters it
    used (it stops right after the object's closing brace)."""

    def __init__(self) -> None:
        self.phase = _Phase.START
        self._key_chars: list[str] = []
        self._in_key = False
        self._key: str | None = None
        self._value: list[str] = []
        self._kind = ""  # "string", "container" or "primitive"
        self._depth = 0  # within a container value
        self._in_string = False
        self._escape = False
        self.saw_arguments = False

    @property
    def done(self) -> bool:
        return self.phase is _Phase.DONE

    @property
    def invalid(self) -> bool:
        return self.phase is _Phase.INVALID

    def feed(self, text: str) -> tuple[ScanEvents, int]:
        events = ScanEvents()
        for used, char in enumerate(text, start=1):
            self._step(char, events)
            if self.phase in (_Phase.DONE, _Phase.INVALID):
                return events, used
        return events, len(text)

    def _step(self, char: str, events: ScanEvents) -> None:
        phase = self.phase
        if phase is _Phase.START:
            if char == "{":
                self.phase = _Phase.KEY
            elif char not in _WHITESPACE:
                self.phase = _Phase.INVALID
        elif phase is _Phase.KEY:
            self._read_key(char)
        elif phase is _Phase.COLON:
            if char == ":":
                self.phase = _Phase.VALUE_START
            elif char not in _WHITESPACE:
                self.phase = _Phase.INVALID
        elif phase is _Phase.VALUE_START:
            if char not in _WHITESPACE:
                self._start_value(char, events)
        elif phase is _Phase.VALUE:
            self._read_value(char, events)
        elif phase is _Phase.AFTER_VALUE:
            self._after_value(char)

    def _read_key(self, char: str) -> None:
        if self._in_key:
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._in_key = False
                self._key = _loads_string("".join(self._key_chars))
                self._key_chars = []
                self.phase = _Phase.COLON if self._key is not None else _Phase.INVALID
                return
            self._key_chars.append(char)
        elif char == '"':
            self._in_key = True
        elif char == "}":
            self.phase = _Phase.DONE
        elif char not in _WHITESPACE + ",":
            self.phase = _Phase.INVALID

    def _streams_arguments(self) -> bool:
        return self._key in ARGUMENT_KEYS and self._kind == "container"

    def _start_value(self, char: str, events: ScanEvents) -> None:
        self._value = [char]
        self.phase = _Phase.VALUE
        if char == '"':
            self._kind, self._in_string = "string", True
        elif char in "{[":
            self._kind, self._depth = "container", 1
            if self._streams_arguments():
                self.saw_arguments = True
                events.arguments.append(char)
        else:
            self._kind = "primitive"

    def _read_value(self, char: str, events: ScanEvents) -> None:
        if self._kind == "primitive":
            if char in _WHITESPACE + ",}":
                self._end_value(events)
                self._after_value(char)
            else:
                self._value.append(char)
            return
        self._value.append(char)
        if self._streams_arguments():
            events.arguments.append(char)
        if self._in_string:
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._in_string = False
                if self._kind == "string":
                    self._end_value(events)
            return
        if char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        elif char in "}]":
            self._depth -= 1
            if self._depth == 0:
                self._end_value(events)

    def _end_value(self, events: ScanEvents) -> None:
        raw = "".join(self._value)
        self.phase = _Phase.AFTER_VALUE
        if self._key == "name":
            name = _loads_string(raw[1:-1]) if self._kind == "string" else None
            if name is None:
                self.phase = _Phase.INVALID
            events.name = name
        elif self._key in ARGUMENT_KEYS and not self._streams_arguments():
            self.saw_arguments = True
            quoted = _loads_string(raw[1:-1]) if self._kind == "string" else None
            events.arguments.append(quoted if quoted is not None else raw)

    def _after_value(self, char: str) -> None:
        if char == ",":
            self.phase = _Phase.KEY
        elif char == "}":
            self.phase = _Phase.DONE
        elif char not in _WHITESPACE:
            self.phase = _Phase.INVALID


def _loads_string(body: str) -> str | None:
    """The text of a JSON string literal's body, or None when it is not valid."""
    try:
        value = json.loads(f'"{body}"')
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None
