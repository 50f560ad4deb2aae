"""The ways model families write tool calls, and how a model's chat template tells which.

A `ToolFormat` knows three things about a family: how its calls look to the parser
(`CallLayout`), how to write a call back into a conversation (for the fallback prompt and
for the grammar), and the structural tags that constrain a call to its tool's schema.

| family | a call | parsed from |
| --- | --- | --- |
| `hermes` (Hermes, Qwen 2.5/3, and the fallback) | `<tool_call>{"name", "arguments"}</tool_call>` | anywhere, or a leading bare `{"name"` |
| `llama3_json` | `{"name", "parameters"}`, several joined by `;` | the start, or `{"name"` |
| `mistral` | `[TOOL_CALLS][{"name", "arguments"}, ...]` | the marker, or a leading `[{` |

Llama 3's `<|python_tag|>` and Mistral's `[TOOL_CALLS]` are special tokens in their
tokenizers, which decoding drops: hence the calls those families open at the very start.
Small Qwen models often drop the `<tool_call>` tags and answer with the bare object
(Qwen2.5-Coder-0.5B did with `tool_choice: auto`, under llama-server too), or wrap it in a
Markdown code fence: an answer that opens with an object naming an offered tool, bare or
fenced, is a call. It is not a grammar trigger: a trigger
fires anywhere in the text, and would force a code sample's `{"name": ...}` into a call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from ovrunner.tools.call_parser import CallLayout
from ovrunner.tools.reasoning import ReasoningTags
from ovrunner.tools.spec import CallConstraint, FunctionTool, TaggedSchema, ToolChoice, ToolSpec


@dataclass(frozen=True)
class ToolFormat:
    name: str
    layout: CallLayout
    # A call as the family writes it: `{name}` and `{arguments}` (JSON) are filled in.
    call_template: str
    argument_key: str = "arguments"

    def call_text(self, name: str, arguments: str) -> str:
        return self.call_template.format(name=json.dumps(name, ensure_ascii=False),
                                         arguments=arguments, key=self.argument_key)  # fmt: skip

    def tag(self, tool: FunctionTool) -> TaggedSchema:
        """The grammar of one call of `tool`: the name fixed, the arguments its schema."""
        begin, _, end = self.call_text(tool.name, "\0").partition("\0")
        return TaggedSchema(begin=begin, schema=tool.parameters, end=end)

    def constraint(self, spec: ToolSpec) -> CallConstraint:
        """What the engine enforces for `spec`: with `required` calls from the first token
        and nothing else; with `auto` free text until the model opens a call, then the call
        in full. A named function, or `parallel_tool_calls: false`, allows one call.

        Calls back to back with no separator: given the choice between a newline and the end,
        SmolLM2 wrote call after call; with the next call or the end, it ended (20 of 20)."""
        return CallConstraint(
            triggers=(self.layout.opener,),
            tags=tuple(self.tag(tool) for tool in spec.callable_tools()),
            calls_only=spec.function is not None or spec.choice is ToolChoice.REQUIRED,
            stop_after_first=spec.function is not None or not spec.parallel,
        )


HERMES = ToolFormat(
    name="hermes",
    layout=CallLayout(opener="<tool_call>", closer="</tool_call>", leading="{"),
    call_template='<tool_call>\n{{"name": {name}, "{key}": {arguments}}}\n</tool_call>',
)
LLAMA3_JSON = ToolFormat(
    name="llama3_json",
    layout=CallLayout(
        opener='{"name"',
        opener_is_json=True,
        separators=";",
        leading="{",
        dropped=("<|python_tag|>",),
    ),
    call_template='{{"name": {name}, "{key}": {arguments}}}',
    argument_key="parameters",
)
MISTRAL = ToolFormat(
    name="mistral",
    layout=CallLayout(opener="[TOOL_CALLS]", in_list=True, leading="["),
    call_template='[TOOL_CALLS][{{"name": {name}, "{key}": {arguments}}}]',
)
FORMATS = {f.name: f for f in (HERMES, LLAMA3_JSON, MISTRAL)}

# Markers in a chat template that say which family it is, first match wins.
_TEMPLATE_MARKERS = (("<tool_call>", HERMES), ("[TOOL_CALLS]", MISTRAL),
                     ("<|python_tag|>", LLAMA3_JSON), ("ipython", LLAMA3_JSON))  # fmt: skip


@dataclass(frozen=True)
class ChatFormat:
    """How a model's chat template deals with tools and reasoning, read once at load."""

    tools: ToolFormat = HERMES
    # The template renders `tools`, `tool_calls` and `tool` turns itself; else the fallback
    # prompt (`prompting.py`) writes them into the conversation in the `hermes` format.
    native_tools: bool = False
    reasoning: ReasoningTags | None = None
    # The template's generation prompt already opens the thinking.
    reasoning_opened: bool = False

    def constraint(self, spec: ToolSpec) -> CallConstraint:
        """The family's call constraint; a thinking the template opened is left free."""
        constraint = self.tools.constraint(spec)
        if self.reasoning is not None and self.reasoning_opened:
            constraint = replace(constraint, after=self.reasoning.close)
        return constraint


def detect(
    template: str, generation_prompt: str = "", tool_format: str | None = None
) -> ChatFormat:
    """The chat format of a model from its chat template (and the text its template puts
    before the answer). `tool_format` names a family to use instead of the detected one."""
    native = "tools" in template or "tool_calls" in template
    family = HERMES
    for marker, candidate in _TEMPLATE_MARKERS:
        if marker in template:
            family = candidate
            break
    if tool_format is not None:
        family = FORMATS[tool_format]
    tags = ReasoningTags()
    thinks = tags.open in template
    return ChatFormat(
        tools=family,
        native_tools=native,
        reasoning=tags if thinks else None,
        reasoning_opened=thinks and generation_prompt.rstrip().endswith(tags.open),
    )
