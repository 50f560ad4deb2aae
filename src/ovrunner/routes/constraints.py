"""What an OpenAI-dialect request says its answer must match, from whichever field it used:
OpenAI's `response_format`, vLLM's `guided_json` / `guided_regex` / `guided_choice` /
`guided_grammar` and `structured_outputs`, llama.cpp's `grammar` and `json_schema`. Each is
honoured (OpenVINO GenAI's xgrammar enforces JSON schemas, regular expressions and EBNF
grammars, GBNF included); a request may carry one."""

from __future__ import annotations

from ovrunner.engines.base import ConstraintKind, OutputConstraint
from ovrunner.errors import InvalidValueError, UnsupportedParameterError
from ovrunner.protocol.openai import ChatCompletionRequest, CompletionRequest, ResponseFormat


def output_constraint(body: ChatCompletionRequest | CompletionRequest) -> OutputConstraint | None:
    """The one constraint the request names, or None; a 400 naming the second if it names two."""
    if body.guided_whitespace_pattern is not None:
        raise UnsupportedParameterError(
            "guided_whitespace_pattern is not supported: the grammar compiler keeps its own "
            "rule for whitespace in JSON",
            param="guided_whitespace_pattern",
        )
    found = [c for c in _named(body) if c is not None]
    if len(found) > 1:
        raise InvalidValueError(
            f"{found[1].param} cannot be combined with {found[0].param}: send one constraint",
            param=found[1].param,
        )
    return found[0] if found else None


def _named(body: ChatCompletionRequest | CompletionRequest) -> list[OutputConstraint | None]:
    regex, grammar = ConstraintKind.REGEX, ConstraintKind.GRAMMAR
    named = [
        from_response_format(body.response_format)
        if isinstance(body, ChatCompletionRequest) else None,
        None if body.guided_json is None
        else OutputConstraint.json_schema(body.guided_json, "guided_json"),
        None if body.guided_regex is None
        else OutputConstraint(regex, body.guided_regex, "guided_regex"),
        None if body.guided_choice is None
        else OutputConstraint.choice(body.guided_choice, "guided_choice"),
        None if body.guided_grammar is None
        else OutputConstraint(grammar, body.guided_grammar, "guided_grammar"),
        None if body.grammar is None else OutputConstraint(grammar, body.grammar, "grammar"),
        None if body.json_schema is None
        else OutputConstraint.json_schema(body.json_schema, "json_schema"),
    ]  # fmt: skip
    outputs = body.structured_outputs
    if outputs is not None:
        param = "structured_outputs"
        named += [
            None if outputs.json_ is None
            else OutputConstraint.json_schema(outputs.json_, f"{param}.json"),
            None if outputs.regex is None
            else OutputConstraint(regex, outputs.regex, f"{param}.regex"),
            None if outputs.choice is None
            else OutputConstraint.choice(outputs.choice, f"{param}.choice"),
            None if outputs.grammar is None
            else OutputConstraint(grammar, outputs.grammar, f"{param}.grammar"),
            OutputConstraint.json_schema({"type": "object"}, f"{param}.json_object")
            if outputs.json_object else None,
        ]  # fmt: skip
    return named


def from_response_format(response_format: ResponseFormat | None) -> OutputConstraint | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return OutputConstraint.json_schema({"type": "object"})
    if response_format.json_schema is None:
        raise UnsupportedParameterError(
            "response_format json_schema needs a json_schema object", param="response_format"
        )
    return OutputConstraint.json_schema(response_format.json_schema.schema_)
