"""Every way an OpenAI-dialect client constrains the answer is honoured (the app in-process
on the tiny model, the real engine): vLLM's `guided_*` and `structured_outputs`, llama.cpp's
`grammar` and `json_schema`, sent as the openai SDK sends them (`extra_body`). The random model
would otherwise produce any bytes, so a match is the constraint's doing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest
from starlette.testclient import TestClient

from tests.engines.test_app_on_tiny_model import TINY, make_client, sdk

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
          "additionalProperties": False}  # fmt: skip
CHOICES = ["yes", "no", 'maybe "so"']
# (extra_body, what the whole answer must be)
HONOURED = [
    ({"guided_regex": r"[0-9]{3}-[a-z]{2}"}, lambda t: re.fullmatch(r"[0-9]{3}-[a-z]{2}", t)),
    ({"structured_outputs": {"regex": r"(ab|cd){2}"}}, lambda t: re.fullmatch(r"(ab|cd){2}", t)),
    ({"guided_choice": CHOICES}, lambda t: t in CHOICES),
    ({"structured_outputs": {"choice": CHOICES}}, lambda t: t in CHOICES),
    ({"grammar": 'root ::= [0-9] [0-9]? " apples"'}, lambda t: re.fullmatch(r"[0-9]{1,2} apples", t)),
    ({"guided_grammar": 'root ::= "a" ("b" | "c")'}, lambda t: t in ("ab", "ac")),
    ({"guided_json": SCHEMA}, lambda t: jsonschema.validate(json.loads(t), SCHEMA) is None),
    ({"json_schema": SCHEMA}, lambda t: jsonschema.validate(json.loads(t), SCHEMA) is None),
    ({"structured_outputs": {"json": SCHEMA}},
     lambda t: jsonschema.validate(json.loads(t), SCHEMA) is None),
]  # fmt: skip
IDS = ["guided_regex", "so.regex", "guided_choice", "so.choice", "grammar", "guided_grammar",
       "guided_json", "json_schema", "so.json"]  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("constraints"), tiny_gguf) as client:
        yield client


@pytest.mark.parametrize(("extra", "matches"), HONOURED, ids=IDS)
def test_each_constraint_shapes_the_whole_answer(client: TestClient, extra, matches) -> None:  # type: ignore[no-untyped-def]
    api = sdk(client)
    # Sampled: without the constraint these would be random bytes. 400 tokens: the JSON cases,
    # whose whitespace the grammar leaves free, took up to 89 over 12 seeds.
    for seed in range(3):
        chat = api.chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "answer"}], max_tokens=400,
            temperature=1.0, seed=seed, extra_body=extra)  # fmt: skip
        choice = chat.choices[0]
        assert choice.finish_reason == "stop", choice
        assert matches(choice.message.content), choice.message.content
    completion = api.completions.create(model=TINY, prompt="answer:", max_tokens=400, seed=7,
                                        temperature=1.0, extra_body=extra)  # fmt: skip
    assert completion.choices[0].finish_reason == "stop"
    assert matches(completion.choices[0].text), completion.choices[0].text


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"guided_regex": "(unclosed"}, "guided_regex", "regular expression cannot be enforced"),
        ({"grammar": 'root ::= "a" |'}, "grammar", "grammar cannot be enforced"),
        ({"guided_json": {"type": "nope"}}, "guided_json", "JSON schema cannot be enforced"),
        ({"guided_regex": "a", "grammar": 'root ::= "a"'}, "grammar", "cannot be combined"),
        ({"guided_choice": ["a"], "response_format": {"type": "json_object"}}, "guided_choice",
         "cannot be combined with response_format"),
        ({"structured_outputs": {"regex": "a", "structural_tag": "x"}},
         "structured_outputs.structural_tag", "Extra inputs"),
        ({"guided_whitespace_pattern": " "}, "guided_whitespace_pattern", "not supported"),
        ({"guided_choice": []}, "guided_choice", "at least 1"),
    ],
    ids=["bad regex", "bad grammar", "bad schema", "two", "with response_format",
         "unknown member", "whitespace pattern", "no choices"],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_400_naming_it(
    client: TestClient, extra, param, words
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(client).chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "x"}], max_tokens=4,
            extra_body=extra)  # fmt: skip
    error = refused.value.body
    assert error["param"] == param, error  # type: ignore[index]
    assert words in error["message"], error  # type: ignore[index]
    assert [r["in_use"] for r in client.get("/engines/ps").json()["runners"]] in ([], [0])


def test_a_constraint_and_tool_calls_exclude_each_other(client: TestClient) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(client).chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "x"}], max_tokens=4,
            tools=tools, extra_body={"guided_regex": "a+"})  # type: ignore[arg-type]  # fmt: skip
    assert refused.value.body["param"] == "guided_regex"  # type: ignore[index]
