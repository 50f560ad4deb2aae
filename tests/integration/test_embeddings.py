"""Embeddings and reranking on a real server: the embedded all-MiniLM-L6-v2 through the
`openai` SDK, LangChain, LlamaIndex, litellm and Ollama's client, and `/v1/rerank` on a tiny
cross-encoder built by the tests (tests/support/tiny_encoder.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from tests.support.server import ServerProcess
from tests.support.tiny_encoder import WINDOW, TinyCrossEncoder, build_tiny_cross_encoder

EMBEDDER = "all-minilm-l6-v2"
RERANKER = "tiny-rerank"
PARAPHRASES = ("A man is eating a meal at the table.", "Someone eats food at a table.")
UNRELATED = "The central bank raised interest rates again."
QUERY = "what is the capital of france"
DOCUMENTS = [
    "paris is the capital of france",
    "the cat sat on the mat",
    "river bank money",
    "berlin is the capital city of germany",
]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> TinyCrossEncoder:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder") / "model")


@pytest.fixture(scope="module")
def encoder_server(
    tmp_path_factory: pytest.TempPathFactory, cross_encoder: TinyCrossEncoder
) -> Iterator[ServerProcess]:
    """A server whose default model is the embedded embedding model (loaded, so converted,
    at start-up), with the tiny cross-encoder imported over HTTP."""
    process = ServerProcess(tmp_path_factory.mktemp("encoders"), "--model", EMBEDDER,
                            "--preload").wait_ready()  # fmt: skip
    imported = httpx.post(f"{process.base_url}/models/import",
                          json={"path": str(cross_encoder.path), "name": RERANKER})  # fmt: skip
    assert imported.status_code == 201, imported.text
    yield process
    process.stop()


@pytest.fixture
def sdk(encoder_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{encoder_server.base_url}/v1", api_key="x", max_retries=0)


def _vectors(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    return np.array([item.embedding for item in response.data])


def test_unit_vectors_that_tell_paraphrases_from_unrelated_text(sdk: openai.OpenAI) -> None:
    texts = [*PARAPHRASES, UNRELATED]
    response = sdk.embeddings.create(model=EMBEDDER, input=texts)
    vectors = _vectors(response)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = vectors @ vectors.T
    assert cosine[0, 1] > 0.5 > cosine[0, 2] and cosine[0, 1] > cosine[1, 2]
    assert response.usage.prompt_tokens == response.usage.total_tokens > 3 * 2
    assert [item.index for item in response.data] == [0, 1, 2]


def test_a_batch_equals_its_single_calls(sdk: openai.OpenAI) -> None:
    texts = [*PARAPHRASES, UNRELATED, "short", "a somewhat longer sentence about the weather today"]
    batch = _vectors(sdk.embeddings.create(model=EMBEDDER, input=texts))
    singles = np.array([sdk.embeddings.create(model=EMBEDDER, input=t).data[0].embedding
                        for t in texts])  # fmt: skip
    assert np.abs(batch - singles).max() < 1e-5


def test_concurrent_requests_are_coalesced_and_answered_alike(
    encoder_server: ServerProcess, sdk: openai.OpenAI
) -> None:
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(24)]
    expected = _vectors(sdk.embeddings.create(model=EMBEDDER, input=texts))
    before = _runner_stats(encoder_server, EMBEDDER)

    async def one_each() -> list[openai.types.CreateEmbeddingResponse]:
        client = openai.AsyncOpenAI(base_url=f"{encoder_server.base_url}/v1", api_key="x")
        async with client:
            return await asyncio.gather(
                *(client.embeddings.create(model=EMBEDDER, input=t) for t in texts)
            )

    answers = asyncio.run(one_each())
    got = np.array([a.data[0].embedding for a in answers])
    assert np.abs(got - expected).max() < 1e-5
    after = _runner_stats(encoder_server, EMBEDDER)
    assert after["inputs"] - before["inputs"] == len(texts)
    # Fewer pipeline calls than requests: they were batched together.
    assert after["calls"] - before["calls"] < len(texts)
    assert after["running"] == after["waiting"] == 0


def _runner_stats(server: ServerProcess, model: str) -> dict[str, int]:
    runners = httpx.get(f"{server.base_url}/engines/ps").json()["runners"]
    return next(r["stats"] for r in runners if r["model"] == model)


def test_base64_decodes_to_the_same_floats(encoder_server: ServerProcess) -> None:
    url = f"{encoder_server.base_url}/v1/embeddings"
    as_float = httpx.post(url, json={"model": EMBEDDER, "input": PARAPHRASES[0]}).json()
    as_base64 = httpx.post(url, json={"model": EMBEDDER, "input": PARAPHRASES[0],
                                      "encoding_format": "base64"}).json()  # fmt: skip
    decoded = np.frombuffer(base64.b64decode(as_base64["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, np.array(as_float["data"][0]["embedding"], dtype=np.float32))


def test_token_ids_of_the_models_tokenizer_embed_as_their_text(sdk: openai.OpenAI) -> None:
    # bert-base-uncased's ids for "hello world", with and without [CLS] ... [SEP].
    text = _vectors(sdk.embeddings.create(model=EMBEDDER, input="hello world"))
    for ids in ([7592, 2088], [101, 7592, 2088, 102]):
        assert (
            np.abs(_vectors(sdk.embeddings.create(model=EMBEDDER, input=[ids])) - text).max() < 1e-5
        )
    both = sdk.embeddings.create(model=EMBEDDER, input=[[7592, 2088], [7592]])
    assert len(both.data) == 2


def test_truncation_only_when_asked(sdk: openai.OpenAI) -> None:
    long_text = "word " * 400  # 400 tokens, past the model's 256
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model=EMBEDDER, input=["fine", long_text])
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.param == "input[1]" and "256" in refused.value.message
    cut = sdk.embeddings.create(model=EMBEDDER, input=long_text, extra_body={"truncate": True})
    assert cut.usage.prompt_tokens == 256


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": ["a"] * 2049}, "input"),
        ({"input": [[99999]]}, "input[0]"),
        ({"input": [[2088, 101]]}, "input[0]"),  # ids that do not round-trip
        ({"input": "a", "dimensions": 128}, "dimensions"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": {"text": "a"}}, "input"),
        ({"input": [1.5]}, "input[0]"),
        ({}, "input"),
        ({"input": "a", "model": "smollm2-135m"}, "model"),
        ({"input": "a", "model": RERANKER}, "model"),
    ],
)
def test_bad_embedding_requests_are_400s_naming_the_field(
    encoder_server: ServerProcess, body: dict[str, object], param: str
) -> None:
    response = httpx.post(f"{encoder_server.base_url}/v1/embeddings",
                          json={"model": EMBEDDER, **body})  # fmt: skip
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert httpx.get(f"{encoder_server.base_url}/healthz").status_code == 200


def test_chat_on_the_embedding_model_says_what_it_is(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=EMBEDDER, messages=[{"role": "user", "content": "hi"}])
    assert (
        refused.value.code == "model_mode_mismatch" and "embedding model" in refused.value.message
    )


def test_models_list_tells_the_modes_apart(sdk: openai.OpenAI) -> None:
    modes = {m.id: m.model_extra["mode"] for m in sdk.models.list().data}
    assert modes[EMBEDDER] == "embedding" and modes[RERANKER] == "reranking"
    assert modes["smollm2-135m"] == "completion"


def test_metrics_count_inputs_and_tokens(encoder_server: ServerProcess, sdk: openai.OpenAI) -> None:
    def counted() -> tuple[float, float]:
        text = httpx.get(f"{encoder_server.base_url}/metrics").text
        values = {}
        for line in text.splitlines():
            if line.startswith("ovrunner_encoder_") and f'model="{EMBEDDER}"' in line:
                values[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
        return values.get("ovrunner_encoder_inputs_total", 0), values.get(
            "ovrunner_encoder_tokens_total", 0
        )

    inputs, tokens = counted()
    usage = sdk.embeddings.create(model=EMBEDDER, input=["one", "two", "three"]).usage
    assert counted() == (inputs + 3, tokens + usage.prompt_tokens)


def test_langchain_llamaindex_and_litellm(
    encoder_server: ServerProcess, sdk: openai.OpenAI
) -> None:
    import litellm
    from langchain_openai import OpenAIEmbeddings
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    base = f"{encoder_server.base_url}/v1"
    expected = _vectors(sdk.embeddings.create(model=EMBEDDER, input=list(PARAPHRASES)))
    langchain = OpenAIEmbeddings(model=EMBEDDER, base_url=base, api_key="x",
                                 check_embedding_ctx_length=False)  # fmt: skip
    got = np.array(langchain.embed_documents(list(PARAPHRASES)))
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(np.array(langchain.embed_query(PARAPHRASES[0])) - expected[0]).max() < 1e-5

    llama = OpenAILikeEmbedding(model_name=EMBEDDER, api_base=base, api_key="x")
    got = np.array(llama.get_text_embedding_batch(list(PARAPHRASES)))
    assert np.abs(got - expected).max() < 1e-5

    response = litellm.embedding(model=f"openai/{EMBEDDER}", input=list(PARAPHRASES),
                                 api_base=base, api_key="x")  # fmt: skip
    got = np.array([item["embedding"] for item in response.data])
    assert np.abs(got - expected).max() < 1e-5


def test_ollama_embed_routes(encoder_server: ServerProcess, sdk: openai.OpenAI) -> None:
    import ollama

    client = ollama.Client(host=encoder_server.base_url)
    expected = _vectors(sdk.embeddings.create(model=EMBEDDER, input=list(PARAPHRASES)))
    embedded = client.embed(model=EMBEDDER, input=list(PARAPHRASES))
    assert np.abs(np.array(embedded.embeddings) - expected).max() < 1e-5
    assert embedded.prompt_eval_count and embedded.prompt_eval_count > 0
    single = client.embeddings(model=EMBEDDER, prompt=PARAPHRASES[0])
    assert np.abs(np.array(single.embedding) - expected[0]).max() < 1e-5
    assert "embedding" in (client.show(EMBEDDER).capabilities or [])
    with pytest.raises(ollama.ResponseError) as refused:
        client.embed(model=EMBEDDER, input="word " * 400, truncate=False)
    assert refused.value.status_code == 400 and "256" in refused.value.error


# -- reranking --------------------------------------------------------------------------------


def _rerank(server: ServerProcess, path: str = "/v1/rerank", **body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}",
                      json={"model": RERANKER, "query": QUERY, "documents": DOCUMENTS, **body})  # fmt: skip


def test_rerank_scores_every_document_by_the_model(
    encoder_server: ServerProcess, cross_encoder: TinyCrossEncoder
) -> None:
    body = _rerank(encoder_server).json()
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for result in results:
        expected = cross_encoder.expected_score(QUERY, DOCUMENTS[result["index"]])
        assert result["relevance_score"] == pytest.approx(expected, abs=1e-5)
        assert "document" not in result
    assert body["usage"]["prompt_tokens"] > sum(len(d.split()) for d in DOCUMENTS)
    assert body["model"] == RERANKER and body["id"].startswith("rerank")


def test_rerank_top_n_documents_and_the_other_path(encoder_server: ServerProcess) -> None:
    full = _rerank(encoder_server).json()["results"]
    top = _rerank(encoder_server, "/rerank", top_n=2, return_documents=True,
                  documents=[{"text": d} for d in DOCUMENTS]).json()["results"]  # fmt: skip
    assert [r["index"] for r in top] == [r["index"] for r in full[:2]]
    assert [r["document"]["text"] for r in top] == [DOCUMENTS[r["index"]] for r in top]
    assert len(_rerank(encoder_server, top_n=100).json()["results"]) == len(DOCUMENTS)


def test_rerank_refuses_an_over_long_document_unless_asked_to_cut(
    encoder_server: ServerProcess,
) -> None:
    long_document = " ".join(["the cat sat on the mat"] * WINDOW)
    refused = _rerank(encoder_server, documents=["paris", long_document])
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    assert refused.json()["error"]["param"] == "documents[1]"
    cut = _rerank(encoder_server, documents=["paris", long_document], truncate=True)
    assert cut.status_code == 200 and len(cut.json()["results"]) == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"documents": []}, "documents"),
        ({"documents": "paris"}, "documents"),
        ({"documents": [1, 2]}, "documents[0]"),
        ({"documents": ["a"] * 2049}, "documents"),
        ({"query": None}, "query"),
        ({"top_n": 0}, "top_n"),
        ({"model": EMBEDDER}, "model"),
        ({"model": "smollm2-135m"}, "model"),
        ({"truncate_prompt_tokens": 8}, "truncate_prompt_tokens"),
        ({"rank_fields": ["title"]}, "rank_fields"),
    ],
)
def test_bad_rerank_requests_are_400s_naming_the_field(
    encoder_server: ServerProcess, body: dict[str, object], param: str
) -> None:
    response = _rerank(encoder_server, **body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert httpx.get(f"{encoder_server.base_url}/healthz").status_code == 200


def test_unknown_model_is_404(encoder_server: ServerProcess) -> None:
    assert _rerank(encoder_server, model="no-such-model").status_code == 404
    response = httpx.post(f"{encoder_server.base_url}/v1/embeddings",
                          json={"model": "no-such-model", "input": "a"})  # fmt: skip
    assert response.status_code == 404
