"""Models with assisted decoding, made with `ovrunner models create` and served: a draft model
(the tiny model as its own draft) and prompt lookup, through the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cli import run_cli, store_with_tiny
from tests.support.server import ServerProcess

PROMPTS = ["the quick brown fox the quick", "abc abc abc", "hello world, hello"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[ServerProcess]:
    store = store_with_tiny(tmp_path_factory.mktemp("assisted-store"), tiny_gguf)
    for name, how in (
        ("tiny-draft", ["--draft-model", "tiny"]),
        ("tiny-lookup", ["--prompt-lookup"]),
    ):
        made = run_cli("models", "create", name, "--from", "tiny", *how, "--store-dir", str(store))
        assert made.returncode == 0, made.stderr
        assert made.stdout.startswith(f"created {name} from tiny")
    process = ServerProcess(store, "--model", "tiny", "--preload").wait_ready()
    yield process
    process.stop()


def answer(client: openai.OpenAI, model: str, prompt: str) -> str:
    completion = client.completions.create(model=model, prompt=prompt, max_tokens=32, temperature=0)
    return completion.choices[0].text


@pytest.mark.parametrize(
    ("model", "decoding"), [("tiny-draft", "draft:tiny"), ("tiny-lookup", "prompt_lookup")]
)
def test_an_assisted_model_answers_as_the_plain_one(
    client: openai.OpenAI, server: ServerProcess, model: str, decoding: str
) -> None:
    assert model in {m.id for m in client.models.list()}
    for prompt in PROMPTS:
        assert answer(client, model, prompt) == answer(client, "tiny", prompt)
    ps = httpx.get(f"{server.base_url}/engines/ps").json()["runners"]
    runners = {(r["model"], r["decoding"]): r for r in ps}
    assert ("tiny", "plain") in runners and (model, decoding) in runners
    stats = runners[(model, decoding)]["stats"]
    assert stats["assisted_steps"] > 0 and stats["assisted_proposed"] > 0
    if model == "tiny-draft":  # its own draft: nearly every candidate is accepted
        accepted = stats["assisted_tokens"] - stats["assisted_steps"]
        assert accepted / stats["assisted_proposed"] > 0.8
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert (
        f'ovrunner_assisted_proposed_tokens_total{{decoding="{decoding}",model="{model}"}}'
        in metrics
    )


@pytest.mark.parametrize("model", ["tiny-draft", "tiny-lookup"])
def test_n_above_one_is_refused_naming_n(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                       n=2, temperature=0.8, max_tokens=4)  # fmt: skip
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "n"  # type: ignore[index]


def test_streamed_draft_answer_is_whole(client: openai.OpenAI) -> None:
    """Several tokens a step arrive as one delta each step; the stream still adds up."""
    stream = client.completions.create(model="tiny-draft", prompt=PROMPTS[0], max_tokens=32,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True})  # fmt: skip
    parts, usage = [], None
    for chunk in stream:
        parts.extend(c.text for c in chunk.choices)
        usage = chunk.usage or usage
    assert "".join(parts) == answer(client, "tiny", PROMPTS[0])
    assert usage is not None and usage.completion_tokens == 32


def test_create_refuses_what_cannot_work(tmp_path: Path, tiny_gguf: Path) -> None:
    store = store_with_tiny(tmp_path / "store", tiny_gguf)
    flags = ["--store-dir", str(store)]
    missing = run_cli("models", "create", "x", "--from", "nope", *flags)
    assert missing.returncode != 0 and "nope" in missing.stderr
    no_draft = run_cli("models", "create", "x", "--from", "tiny", "--draft-model", "nope", *flags)
    assert no_draft.returncode != 0 and "nope" in no_draft.stderr
    both = run_cli("models", "create", "x", "--from", "tiny", "--prompt-lookup", "--draft-model",
                   "tiny", *flags)  # fmt: skip
    assert both.returncode == 2 and "not allowed with" in both.stderr
    taken = run_cli("models", "create", "tiny", "--from", "tiny", "--prompt-lookup", *flags)
    assert taken.returncode != 0 and "already exists" in taken.stderr
    assert "x" not in run_cli("models", "list", *flags).stdout.split()
    # A base with a model derived from it stays until that model goes.
    run_cli("models", "create", "y", "--from", "tiny", "--prompt-lookup", *flags, check=True)
    kept = run_cli("models", "rm", "tiny", *flags)
    assert kept.returncode != 0 and "y" in kept.stderr
    run_cli("models", "rm", "y", *flags, check=True)
    run_cli("models", "rm", "tiny", *flags, check=True)


def test_two_models_drafting_for_each_other_still_load(tmp_path: Path, tiny_gguf: Path) -> None:
    store = store_with_tiny(tmp_path / "store", tiny_gguf)
    flags = ["--store-dir", str(store)]
    # A draft's own draft is not followed, so the loop between them does not recurse.
    run_cli("models", "create", "a", "--from", "tiny", "--draft-model", "tiny", *flags, check=True)
    run_cli("models", "create", "b", "--from", "tiny", "--draft-model", "a", *flags, check=True)
    manifest = store / "models" / "a" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"draft_model": "tiny"', '"draft_model": "b"'))
    assert {"a", "b"} <= set(run_cli("models", "list", *flags, check=True).stdout.split())
    assert run_cli("run", "a", "hi", "--max-tokens", "2", *flags).returncode == 0
    assert run_cli("models", "rm", "a", *flags).returncode != 0  # b drafts with it
