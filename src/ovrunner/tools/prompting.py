"""Tools and tool turns into the conversation a chat template renders.

A template that knows tools (`ChatFormat.native_tools`) gets them as it expects: the tool
list, assistant turns with `tool_calls` (arguments as objects), `tool` turns. For the many
that do not (SmolLM2's among them) the fallback writes them into the conversation itself,
in the `hermes` format: the tools and how to call them in the system message, earlier calls
as `<tool_call>` markup in the assistant's turn, and results as a user turn in
`<tool_response>` tags. Either way the model sees every earlier call and result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ovrunner.tools.formats import ChatFormat
from ovrunner.tools.spec import ToolSpec

Message = dict[str, Any]

FALLBACK_INSTRUCTIONS = """\
You can call functions to answer the user. They are described as JSON in <tools></tools>:
<tools>
{tools}
</tools>
To call a function, write its name and arguments as JSON inside <tool_call></tool_call>:
<tool_call>
{{"name": "function name", "arguments": {{"argument": "value"}}}}
</tool_call>
Each result comes back inside <tool_response></tool_response>."""


def template_input(
    messages: Sequence[Message], spec: ToolSpec | None, chat: ChatFormat
) -> tuple[list[Message], list[dict[str, Any]] | None]:
    """The messages and the `tools` argument for the model's chat template."""
    offered = spec is not None and spec.calling
    if chat.native_tools:
        tools = [t.as_openai() for t in spec.callable_tools()] if offered and spec else None
        return [_native(m) for m in messages], tools
    rendered = [_fallback(m, chat) for m in messages]
    if offered and spec is not None:
        described = "\n".join(json.dumps(t.as_openai(), ensure_ascii=False)
                              for t in spec.callable_tools())  # fmt: skip
        instructions = FALLBACK_INSTRUCTIONS.format(tools=described)
        if rendered and rendered[0]["role"] == "system":
            rendered[0] = {"role": "system",
                           "content": f"{rendered[0]['content']}\n\n{instructions}"}  # fmt: skip
        else:
            rendered.insert(0, {"role": "system", "content": instructions})
    return rendered, None


def _native(message: Message) -> Message:
    """Templates read call arguments as objects (`tool_call.arguments | tojson`)."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = dict(message)
    out["tool_calls"] = [
        {**call, "function": {**call["function"],
                              "arguments": _as_object(call["function"]["arguments"])}}
        for call in calls
    ]  # fmt: skip
    return out


def _fallback(message: Message, chat: ChatFormat) -> Message:
    role = message["role"]
    content = message.get("content") or ""
    if role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    calls = message.get("tool_calls")
    if role == "assistant" and calls:
        written = [chat.tools.call_text(c["function"]["name"], c["function"]["arguments"])
                   for c in calls]  # fmt: skip
        return {
            "role": "assistant",
            "content": "\n".join([content, *written] if content else written),
        }
    return {"role": role, "content": content}


def _as_object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
