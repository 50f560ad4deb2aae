from __future__ import annotations

import pytest
from pydantic import ValidationError

from ovrunner.protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChoiceDelta,
    CompletionRequest,
    ContentChunkTemplate,
)
from ovrunner.protocol.responses import ResponseCreateParams


@pytest.mark.parametrize(
    ("index", "text", "finish_reason"),
    [(0, "Hello", None), (1, ' "quoted" \\ \n\t', None), (0, "", "stop"), (2, "é🙂\u2028", "length"),
     (0, "\x00\x1f", None)],
)  # fmt: skip
def test_content_template_matches_the_model(
    index: int, text: str, finish_reason: str | None
) -> None:
    model = ChatCompletionChunk(
        id="chatcmpl-1", created=123, model='m"x',
        choices=[ChatCompletionChunkChoice(index=index, delta=ChoiceDelta(content=text or None),
                                           finish_reason=finish_reason)],
    )  # fmt: skip
    rendered = ContentChunkTemplate("chatcmpl-1", 123, 'm"x').render(index, text, finish_reason)
    assert rendered == model.model_dump_json()


def test_a_long_text_input_and_a_long_stop_string_are_not_lists() -> None:
    """The bounds on lists (items, stop strings) never bound the length of one string: a
    Responses input of a whole document, or a stop string of 40 characters, is accepted."""
    document = "word " * 40_000
    assert ResponseCreateParams.model_validate({"model": "m", "input": document}).input == document
    stop = "\n\nEND OF THE ANSWER, NOTHING FOLLOWS\n"
    request = CompletionRequest.model_validate({"model": "m", "prompt": "x", "stop": stop})
    assert request.stop == stop
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "stop": ["s"] * 17})
    with pytest.raises(ValidationError):
        ResponseCreateParams.model_validate({"model": "m", "input": [{"role": "user",
                                                                      "content": "x"}] * 1025})  # fmt: skip
