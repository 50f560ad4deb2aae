"""The encoder routes: `/v1/embeddings` (OpenAI's shape) and `/v1/rerank` (also `/rerank`,
as llama.cpp and vLLM serve it), each also under `/engines/{engine}`."""

from __future__ import annotations

import base64
import struct

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ovrunner.engines.base import EmbeddingRequest, Embeddings, Mode, RerankRequest
from ovrunner.errors import InvalidValueError, UnsupportedParameterError
from ovrunner.metrics import Metrics
from ovrunner.protocol.embeddings import (
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingCreateRequest,
    EmbeddingUsage,
    RerankCreateRequest,
    RerankDocument,
    RerankResponse,
    RerankResult,
)
from ovrunner.protocol.openai import new_id
from ovrunner.routes.body import parse_body
from ovrunner.routes.serving import encoder_lease
from ovrunner.settings import Settings


def _json(model: CreateEmbeddingResponse | RerankResponse) -> Response:
    return Response(model.model_dump_json(exclude_none=True), media_type="application/json")


def _check_count(count: int, settings: Settings, param: str) -> None:
    if count == 0:
        raise InvalidValueError(f"{param} must hold at least one input", param=param)
    if count > settings.embedding_max_inputs:
        raise InvalidValueError(
            f"{param} holds {count} inputs; at most {settings.embedding_max_inputs} are allowed "
            "per request",
            param=param,
        )


async def embed(
    request: Request, body: EmbeddingCreateRequest, *, keep_alive: float | None = None
) -> Embeddings:
    """Embed the request's inputs on its model (shared with Ollama's `/api/embed`)."""
    settings: Settings = request.app.state.settings
    _check_count(body.count(), settings, "input")
    texts = body.texts()
    work = EmbeddingRequest(
        texts=tuple(texts or ()),
        token_ids=None if texts is not None else tuple(map(tuple, body.token_ids())),
        truncate=body.truncate,
        max_tokens=settings.embedding_max_tokens,
        dimensions=body.dimensions,
    )
    async with encoder_lease(request, body.model, Mode.EMBEDDING, keep_alive=keep_alive) as lease:
        result = await lease.runner.embed(work)
    metrics: Metrics = request.app.state.metrics
    metrics.observe_encoded(body.model, "embedding", len(result.vectors), result.prompt_tokens)
    return result


async def create_embeddings(request: Request) -> Response:
    body = await parse_body(request, EmbeddingCreateRequest)
    result = await embed(request, body)
    if body.encoding_format == "base64":
        data = [Embedding(index=i, embedding=_base64(v)) for i, v in enumerate(result.vectors)]
    else:
        data = [Embedding(index=i, embedding=v) for i, v in enumerate(result.vectors)]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return _json(CreateEmbeddingResponse(data=data, model=body.model, usage=usage))


def _base64(vector: list[float]) -> str:
    # What OpenAI sends and its SDK decodes: the float32 values, little-endian.
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# Fields of the peers' rerank APIs that would change the answer; refused, not ignored.
# (vLLM's `truncate_prompt_tokens` cuts inputs; Cohere's `rank_fields` and
# `max_chunks_per_doc` pick and split what is scored.)
UNSUPPORTED_RERANK_FIELDS = ("truncate_prompt_tokens", "rank_fields", "max_chunks_per_doc")


async def rerank(request: Request) -> Response:
    body = await parse_body(request, RerankCreateRequest)
    for field in UNSUPPORTED_RERANK_FIELDS:
        if field in (body.model_extra or {}):
            raise UnsupportedParameterError(
                f"{field} is not supported; send 'truncate': true to cut over-long pairs",
                param=field,
            )
    settings: Settings = request.app.state.settings
    _check_count(len(body.documents), settings, "documents")
    documents = body.document_texts()
    work = RerankRequest(query=body.query, documents=tuple(documents), truncate=body.truncate,
                         max_tokens=settings.embedding_max_tokens)  # fmt: skip
    async with encoder_lease(request, body.model, Mode.RERANKING) as lease:
        result = await lease.runner.rerank(work)
    metrics: Metrics = request.app.state.metrics
    metrics.observe_encoded(body.model, "reranking", len(documents), result.prompt_tokens)
    order = sorted(range(len(documents)), key=lambda i: result.scores[i], reverse=True)
    results = [
        RerankResult(
            index=i,
            relevance_score=result.scores[i],
            document=RerankDocument(text=documents[i]) if body.return_documents else None,
        )
        for i in order[: body.top_n]
    ]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return _json(RerankResponse(id=new_id("rerank"), model=body.model, results=results,
                                usage=usage))  # fmt: skip


def routes() -> list[BaseRoute]:
    table = [("/v1/embeddings", create_embeddings), ("/v1/rerank", rerank), ("/rerank", rerank)]
    return [
        Route(prefix + path, endpoint, methods=["POST"])
        for prefix in ("", "/engines/{engine}")
        for path, endpoint in table
    ]
