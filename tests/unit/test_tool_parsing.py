"""The tool-call and reasoning parsers on recorded model outputs, whole and streamed.

Every output is also fed split at every character boundary (in two pieces, and one character
at a time) and at its recorded token boundaries: the joined stream must equal the whole
parse, and no markup may reach the content.
"""

from __future__ import annotations

import json

import pytest

from ovrunner.engines.base import FinishReason, GenerationDelta
from ovrunner.tools.call_parser import ToolCallParser
from ovrunner.tools.formats import HERMES, LLAMA3_JSON, MISTRAL, ChatFormat, ToolFormat, detect
from ovrunner.tools.output import OutputParser
from ovrunner.tools.reasoning import ReasoningSplitter, ReasoningTags
from ovrunner.tools.spec import FunctionTool, ToolChoice, ToolSpec

# Outputs as models wrote them (SmolLM2 under the grammar, and the published formats of
# Qwen 2.5, Llama 3.1 and Mistral), with the content and calls each must parse to.
RECORDED: list[tuple[ToolFormat, list[str], str, list[tuple[str, dict]]]] = [
    (  # SmolLM2-135M under the hermes grammar, token by token as it streamed
        HERMES,
        [
            "<",
            "tool",
            "_",
            "call",
            ">\n",
            '{"',
            "name",
            '":',
            ' "',
            "get",
            "_",
            "weather",
            '",',
            ' "',
            "arguments",
            '":',
            ' {"',
            "city",
            '":',
            ' "',
            "Paris",
            '"}',
            "}\n",
            "</",
            "tool",
            "_",
            "call",
            ">",
            "\n",
            "The",
            " weather",
            " in",
            " Paris",
            ".",
        ],
        "The weather in Paris.",
        [("get_weather", {"city": "Paris"})],
    ),
    (  # Qwen 2.5: text, then two parallel calls
        HERMES,
        [
            "Let me check both.",
            "\n<tool_call>",
            '\n{"name": "get_weather", "arguments": ',
            '{"city": "Paris", "unit": "celsius"}}\n',
            "</tool_call>\n<tool_call>\n",
            '{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>',
        ],
        "Let me check both.",
        [("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_weather", {"city": "Tokyo"})],
    ),
    (  # arguments before the name, nested values with braces and escapes in strings
        HERMES,
        [
            '<tool_call>{"arguments": {"q": "a } b \\" {", "n": [1, {"x": null}]}, ',
            '"name": "search"}</tool_call>',
        ],
        "",
        [("search", {"q": 'a } b " {', "n": [1, {"x": None}]})],
    ),
    (  # arguments quoted as a JSON string, as some models write them
        HERMES,
        ['<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>'],
        "",
        [("add", {"a": 1, "b": 2})],
    ),
    (  # a call with no arguments at all
        HERMES,
        ['<tool_call>{"name": "now"}</tool_call>'],
        "",
        [("now", {})],
    ),
    (  # Qwen2.5-Coder-0.5B (Q4_K_M) with tool_choice auto: the bare object, no tags
        HERMES,
        ['{"name": "get_weather", "arguments": {"city": "Paris"}}'],
        "",
        [("get_weather", {"city": "Paris"})],
    ),
    (  # Qwen2.5-Coder-0.5B in int8, "What is the weather in Paris?": the object in a fence
        HERMES,
        [
            "```",
            "json\n{\n",
            '  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n',
            "  }\n}\n``",
            "`",
        ],
        "",
        [("get_weather", {"city": "Paris"})],
    ),
    (  # two calls in one fence: the fence closes after both
        HERMES,
        ['```json\n{"name": "a", "arguments": {"x": 1}}\n{"name": "b", "arguments": {}}\n```'],
        "",
        [("a", {"x": 1}), ("b", {})],
    ),
    (  # a fenced call, then a word about it
        HERMES,
        ['```\n{"name": "now", "arguments": {}}\n```\nChecking the time.'],
        "Checking the time.",
        [("now", {})],
    ),
    (  # Llama 3.1: one call (its <|python_tag|> left in by a decoder that keeps specials)
        LLAMA3_JSON,
        ["<|python_tag|>", '{"name": "get_weather", ', '"parameters": {"city": "Paris"}}'],
        "",
        [("get_weather", {"city": "Paris"})],
    ),
    (  # Llama 3.1: parallel calls joined by `;`
        LLAMA3_JSON,
        ['{"name": "a", "parameters": {"x": 1}}', "; ", '{"name": "b", "parameters": {}}'],
        "",
        [("a", {"x": 1}), ("b", {})],
    ),
    (  # Mistral: the marker and an array of calls
        MISTRAL,
        [
            "[TOOL_CALLS]",
            ' [{"name": "a", "arguments": {"x": 1}}, ',
            '{"name": "b", "arguments": {"y": "z"}}]',
        ],
        "",
        [("a", {"x": 1}), ("b", {"y": "z"})],
    ),
    (  # Mistral with its special marker dropped by decoding
        MISTRAL,
        ['[{"name": "a", "arguments": {"x": 1}}]'],
        "",
        [("a", {"x": 1})],
    ),
]

# Text that looks like markup but is not a call: it stays content, verbatim.
NOT_CALLS = [
    (HERMES, "Use <tool_call> tags like <this>."),
    (HERMES, "a < b and <tool_ca"),
    (HERMES, "<tool_call>not json</tool_call> and more"),
    (LLAMA3_JSON, '{"x": 1} is an object'),
    (MISTRAL, "[1, 2] is a list"),
    (MISTRAL, "[TOOL"),
]


def parse(
    fmt: ToolFormat, pieces: list[str], names: frozenset[str] | None = None
) -> tuple[str, list[tuple[str, str, str]]]:
    """Content and (id, name, arguments) of each call, from feeding `pieces` in order."""
    parser = ToolCallParser(fmt.layout, names=names)
    content = ""
    calls: dict[int, list[str]] = {}
    for out in [*(parser.feed(p) for p in pieces), parser.finish()]:
        content += out.content
        for call in out.calls:
            if call.id is not None:
                assert call.index not in calls, "a call's id and name come once, first"
                calls[call.index] = [call.id, call.name or "", ""]
            calls[call.index][2] += call.arguments
    return content, [tuple(calls[i]) for i in sorted(calls)]  # type: ignore[misc]


def splits(text: str) -> list[list[str]]:
    """The text in two pieces at every boundary, and one character at a time."""
    return [[text[:i], text[i:]] for i in range(1, len(text))] + [list(text)]


def without_ids(calls: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(name, arguments) for _, name, arguments in calls]


@pytest.mark.parametrize(("fmt", "tokens", "content", "expected"), RECORDED)
def test_recorded_outputs_parse_to_their_calls(fmt, tokens, content, expected) -> None:
    whole_content, calls = parse(fmt, ["".join(tokens)])
    assert whole_content == content
    assert [(name, json.loads(arguments)) for _, name, arguments in calls] == expected
    for call_id, _, _ in calls:
        assert call_id.startswith("call_")


@pytest.mark.parametrize(("fmt", "tokens", "content", "expected"), RECORDED)
def test_streams_equal_the_whole_answer_at_every_split(fmt, tokens, content, expected) -> None:
    text = "".join(tokens)
    whole_content, whole_calls = parse(fmt, [text])
    for pieces in [tokens, *splits(text)]:
        streamed_content, streamed_calls = parse(fmt, pieces)
        assert streamed_content == whole_content, pieces
        assert without_ids(streamed_calls) == without_ids(whole_calls), pieces


@pytest.mark.parametrize(("fmt", "text"), NOT_CALLS)
def test_text_that_is_not_a_call_stays_content(fmt, text) -> None:
    for pieces in [[text], *splits(text)]:
        assert parse(fmt, pieces) == (text, [])


def test_a_leading_object_is_a_call_only_if_it_names_an_offered_tool() -> None:
    offered = frozenset({"get_weather"})
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    for pieces in [[call], *splits(call)]:
        assert without_ids(parse(HERMES, pieces, offered)[1]) == [
            ("get_weather", '{"city": "Paris"}')
        ]
    for text in ['{"name": "Alice", "age": 3} is a person', '{"city": "Paris"}',
                 'Here: {"name": "get_weather", "arguments": {}}',
                 '```json\n{"name": "Alice", "age": 3}\n```', "```json\n[1, 2]\n```",
                 '```python\nprint({"name": "get_weather"})\n```', "```", "``` json"]:  # fmt: skip
        for pieces in [[text], *splits(text)]:
            assert parse(HERMES, pieces, offered) == (text, []), pieces


def test_markup_never_reaches_content_however_it_is_split() -> None:
    text = 'Sure. <tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    for pieces in splits(text):
        parser = ToolCallParser(HERMES.layout)
        for piece in pieces:
            assert "<" not in parser.feed(piece).content
        assert "<" not in parser.finish().content


def test_a_call_cut_short_keeps_what_was_written() -> None:
    content, calls = parse(HERMES, ['<tool_call>{"name": "f", "arguments": {"a": "tru'])
    assert content == "" and without_ids(calls) == [("f", '{"a": "tru')]


def test_at_most_one_call_without_parallel_calls() -> None:
    parser = ToolCallParser(HERMES.layout, max_calls=1)
    out = parser.feed('<tool_call>{"name": "f", "arguments": {}}</tool_call>')
    assert len([c for c in out.calls if c.id]) == 1 and parser.calls == 1


# -- reasoning --------------------------------------------------------------------------------


def think(pieces: list[str], *, opened: bool = False) -> tuple[str, str]:
    splitter = ReasoningSplitter(ReasoningTags(), opened=opened)
    reasoning = content = ""
    for r, c in [*(splitter.feed(p) for p in pieces), splitter.finish()]:
        reasoning, content = reasoning + r, content + c
    return reasoning, content


@pytest.mark.parametrize(
    ("text", "opened", "expected"),
    [
        ("<think>\nPlan: add.\n</think>\n\nIt is 4.", False, ("\nPlan: add.\n", "It is 4.")),
        ("Plan: add.</think>It is 4.", True, ("Plan: add.", "It is 4.")),  # opened by the template
        ("<think>cut short by max_tok", False, ("cut short by max_tok", "")),
        ("No thinking, but <think> mentioned.", False, ("", "No thinking, but <think> mentioned.")),
        ("<thi", False, ("", "<thi")),
    ],
)
def test_reasoning_is_split_from_the_answer_at_every_boundary(text, opened, expected) -> None:
    for pieces in [[text], *splits(text)]:
        assert think(pieces, opened=opened) == expected, pieces


# -- chat formats and the per-request parser ------------------------------------------------


def test_the_chat_template_tells_the_family() -> None:
    assert detect("{{ messages }}") == ChatFormat()  # no tools: the hermes fallback
    qwen = detect("{% if tools %}<tool_call>{{ tool_call }}</tool_call>{% endif %}")
    assert qwen.tools is HERMES and qwen.native_tools
    assert detect("{% if tools %}<|python_tag|>{% endif %}").tools is LLAMA3_JSON
    assert detect("{% for tool in tools %}[TOOL_CALLS]{% endfor %}").tools is MISTRAL
    r1 = detect("{{ '<think>' }}", generation_prompt="<|Assistant|><think>\n")
    assert r1.reasoning == ReasoningTags() and r1.reasoning_opened
    assert detect("{{ messages }}", tool_format="mistral").tools is MISTRAL


def test_output_parser_turns_a_call_into_finish_reason_tool_calls() -> None:
    spec = ToolSpec((FunctionTool("f"),), ToolChoice.REQUIRED)
    parser = OutputParser.for_request(ChatFormat(), spec, separate_reasoning=True)
    assert parser is not None
    first = parser.parse(GenerationDelta(0, '<tool_call>{"name": "f", ', 5, 3))
    last = parser.parse(GenerationDelta(0, '"arguments": {}}</tool_call>', 5, 9,
                                        FinishReason.STOP))  # fmt: skip
    assert first.text == last.text == ""
    assert first.tool_calls[0].name == "f"
    assert "".join(c.arguments for c in first.tool_calls + last.tool_calls) == "{}"
    assert last.finish_reason is FinishReason.TOOL_CALLS
    cut = parser.parse(GenerationDelta(1, '<tool_call>{"name": "f"', 5, 9, FinishReason.LENGTH))
    assert cut.finish_reason is FinishReason.LENGTH


def test_nothing_is_parsed_without_tools_or_reasoning() -> None:
    assert OutputParser.for_request(ChatFormat(), None, separate_reasoning=True) is None
    none = ToolSpec((FunctionTool("f"),), ToolChoice.NONE)
    assert OutputParser.for_request(ChatFormat(), none, separate_reasoning=True) is None
    thinking = ChatFormat(reasoning=ReasoningTags())
    assert OutputParser.for_request(thinking, None, separate_reasoning=False) is None


def test_constraints_follow_tool_choice() -> None:
    tools = (FunctionTool("a", parameters='{"type": "object"}'), FunctionTool("b"))
    required = HERMES.constraint(ToolSpec(tools, ToolChoice.REQUIRED))
    assert required.calls_only and not required.stop_after_first
    assert [t.begin for t in required.tags] == [
        '<tool_call>\n{"name": "a", "arguments": ',
        '<tool_call>\n{"name": "b", "arguments": ',
    ]
    assert required.tags[0].end == "}\n</tool_call>"
    named = HERMES.constraint(ToolSpec(tools, ToolChoice.REQUIRED, function="b"))
    assert [t.begin for t in named.tags] == ['<tool_call>\n{"name": "b", "arguments": ']
    assert named.stop_after_first
    auto = HERMES.constraint(ToolSpec(tools, ToolChoice.AUTO, parallel=False))
    assert not auto.calls_only and auto.stop_after_first and auto.triggers == ("<tool_call>",)
    for fmt in (HERMES, LLAMA3_JSON, MISTRAL):  # the grammar writes what the parser reads
        tag = fmt.tag(tools[0])
        _, calls = parse(fmt, [tag.begin + '{"k": 1}' + tag.end])
        assert without_ids(calls) == [("a", '{"k": 1}')]
