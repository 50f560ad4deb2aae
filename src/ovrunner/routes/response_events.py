"""The Responses API's answer, grown from engine deltas: its output items (reasoning,
message, function calls) and, as they grow, the stream events the `openai` SDK expects, each
with its `sequence_number`. A whole answer is exactly the state a stream ends with."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ovrunner.engines.base import GenerationDelta
from ovrunner.errors import OvrunnerError
from ovrunner.protocol.responses import ResponseCreateParams
from ovrunner.routes.response_tools import ResponseTools, custom_input
from ovrunner.routes.serving import Generation

Item = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponseOutput:
    """The output items of one response, grown from deltas, with the events that grow them."""

    def __init__(self, body: ResponseCreateParams, response_id: str) -> None:
        self.response: dict[str, Any] = {
            "id": response_id, "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "model": body.model, "output": [], "error": None,
            "incomplete_details": None, "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens, "temperature": body.temperature,
            "top_p": body.top_p, "parallel_tool_calls": body.parallel_tool_calls,
            "tool_choice": body.tool_choice if isinstance(body.tool_choice, str | None)
            else body.tool_choice.model_dump(),
            "tools": [t.model_dump(exclude_none=True) for t in body.tools or []],
            "text": body.text.model_dump(by_alias=True, exclude_none=True) if body.text
            else {"format": {"type": "text"}},
            "previous_response_id": body.previous_response_id, "store": body.store,
            "metadata": body.metadata or {}, "truncation": "disabled", "usage": None,
        }  # fmt: skip
        self._sequence = 0
        self._open: Item | None = None  # the item receiving text now
        self._calls: dict[int, Item] = {}
        self._tools = ResponseTools.of(body)
        self._custom_arguments: dict[int, str] = {}  # a custom call's arguments, as generated

    def event(self, kind: str, **fields: Any) -> str:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return json.dumps(event, ensure_ascii=False)

    def begin(self) -> list[str]:
        return [self.event("response.created", response=self.response),
                self.event("response.in_progress", response=self.response)]  # fmt: skip

    def add(self, delta: GenerationDelta) -> list[str]:
        events: list[str] = []
        if delta.reasoning:
            events += self._text("reasoning", delta.reasoning)
        if delta.text:
            events += self._text("message", delta.text)
        for call in delta.tool_calls:
            if call.id is not None:
                events += self._close()
                item = self._tools.call_item(call.id, call.name or "", new_id("fc"))
                self._calls[call.index] = item
                events += self._add_item(item)
            item = self._calls[call.index]
            if item["type"] == "custom_tool_call":
                # Its input is the text inside the JSON the model writes: given whole at the end.
                self._custom_arguments[call.index] = self._custom_arguments.get(call.index, "") + (
                    call.arguments or ""
                )
            elif call.arguments:
                item["arguments"] += call.arguments
                events.append(self.event("response.function_call_arguments.delta",
                                         item_id=item["id"], output_index=self._index(item),
                                         delta=call.arguments))  # fmt: skip
        return events

    def _index(self, item: Item) -> int:
        return next(i for i, it in enumerate(self.response["output"]) if it is item)

    def _add_item(self, item: Item) -> list[str]:
        self.response["output"].append(item)
        return [self.event("response.output_item.added", output_index=self._index(item),
                           item=dict(item, content=list(item.get("content", [])))
                           if "content" in item else dict(item))]  # fmt: skip

    def _text(self, kind: str, text: str) -> list[str]:
        events: list[str] = []
        if self._open is None or self._open["type"] != kind:
            events += self._close()
            if kind == "message":
                self._open = {"type": "message", "id": new_id("msg"), "status": "in_progress",
                              "role": "assistant", "content": []}  # fmt: skip
                part = {"type": "output_text", "text": "", "annotations": []}
            else:
                self._open = {"type": "reasoning", "id": new_id("rs"), "summary": [], "content": []}
                part = {"type": "reasoning_text", "text": ""}
            events += self._add_item(self._open)
            self._open["content"].append(part)
            events.append(self.event("response.content_part.added", item_id=self._open["id"],
                                     output_index=self._index(self._open), content_index=0,
                                     part=dict(part)))  # fmt: skip
        item = self._open
        assert item is not None
        item["content"][0]["text"] += text
        name = (
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        )
        extra: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        events.append(self.event(name, item_id=item["id"], output_index=self._index(item),
                                 content_index=0, delta=text, **extra))  # fmt: skip
        return events

    def _close(self, status: str = "completed") -> list[str]:
        item, self._open = self._open, None
        if item is None:
            return []
        index, part = self._index(item), item["content"][0]
        done = (
            "response.output_text.done"
            if item["type"] == "message"
            else "response.reasoning_text.done"
        )
        extra: dict[str, Any] = {"logprobs": []} if item["type"] == "message" else {}
        if item["type"] == "message":
            item["status"] = status
        return [
            self.event(done, item_id=item["id"], output_index=index, content_index=0,
                       text=part["text"], **extra),
            self.event("response.content_part.done", item_id=item["id"], output_index=index,
                       content_index=0, part=part),
            self.event("response.output_item.done", output_index=index, item=item),
        ]  # fmt: skip

    def finish(self, finish_reason: str | None, generation: Generation) -> list[str]:
        status = "incomplete" if finish_reason == "length" else "completed"
        events = self._close(status)
        for number, item in self._calls.items():
            item["status"] = status
            index = self._index(item)
            if item["type"] == "custom_tool_call":
                item["input"] = custom_input(self._custom_arguments.get(number, ""))
                events += [self.event("response.custom_tool_call_input.delta", item_id=item["id"],
                                      output_index=index, delta=item["input"]),
                           self.event("response.custom_tool_call_input.done", item_id=item["id"],
                                      output_index=index, input=item["input"])]  # fmt: skip
            else:
                events.append(self.event("response.function_call_arguments.done",
                                         item_id=item["id"], output_index=index,
                                         name=item["name"], arguments=item["arguments"]))  # fmt: skip
            events.append(self.event("response.output_item.done", output_index=index, item=item))
        usage = generation.tally.usage()
        self.response["usage"] = {
            "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }  # fmt: skip
        if finish_reason == "length":
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
            return [*events, self.event("response.incomplete", response=self.response)]
        self.response["status"] = "completed"
        return [*events, self.event("response.completed", response=self.response)]

    def fail(self, error: OvrunnerError) -> list[str]:
        self.response["status"] = "failed"
        self.response["error"] = {"code": error.code, "message": error.message}
        return [self.event("response.failed", response=self.response)]
