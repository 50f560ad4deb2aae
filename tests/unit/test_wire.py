from __future__ import annotations

import pytest

from ovrunner.protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChoiceDelta,
    ContentChunkTemplate,
)


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
