"""The OpenAPI document, generated from the wire models, for fuzzers and client generators.

One table lists every route with its request and answer models; pydantic writes the schemas.
A unit test holds the table to the app's routes, so a new route cannot be left out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse

from ovrunner import __version__
from ovrunner.protocol.anthropic import CountTokensParams, Message, MessageCreateParams, TokenCount
from ovrunner.protocol.audio import TranscriptionJson, TranscriptionUpload, TranslationUpload
from ovrunner.protocol.embeddings import (
    CreateEmbeddingResponse,
    EmbeddingCreateRequest,
    RerankCreateRequest,
    RerankResponse,
)
from ovrunner.protocol.ollama import ChatRequest as OllamaChatRequest
from ovrunner.protocol.ollama import EmbeddingsRequest as OllamaEmbeddingsRequest
from ovrunner.protocol.ollama import EmbedRequest as OllamaEmbedRequest
from ovrunner.protocol.ollama import GenerateRequest as OllamaGenerateRequest
from ovrunner.protocol.ollama import ModelRequest as OllamaModelRequest
from ovrunner.protocol.ollama import PullRequest as OllamaPullRequest
from ovrunner.protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    Model,
    ModelList,
)
from ovrunner.protocol.ops import UnloadRequest, UnloadResponse
from ovrunner.protocol.responses import ResponseCreateParams
from ovrunner.protocol.store import ImportRequest, PullRequest
from ovrunner.protocol.worker import WorkerRequest, WorkerResponse


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorObject


# (method, path, summary, request model, answer model; None: a JSON object described in docs)
ROUTES: list[tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None]] = [
    ("get", "/", "The built-in web page (its files are under /ui/)", None, None),
    ("get", "/v1/models", "List models", None, ModelList),
    ("get", "/v1/models/{model}", "Retrieve a model", None, Model),
    ("delete", "/v1/models/{model}", "Delete a stored model", None, None),
    ("post", "/v1/chat/completions", "Create a chat completion", ChatCompletionRequest,
     ChatCompletion),
    ("post", "/v1/completions", "Create a completion", CompletionRequest, Completion),
    ("post", "/v1/embeddings", "Create embeddings", EmbeddingCreateRequest,
     CreateEmbeddingResponse),
    ("post", "/v1/rerank", "Rerank documents by a query", RerankCreateRequest, RerankResponse),
    ("post", "/rerank", "Rerank documents (llama.cpp's path)", RerankCreateRequest,
     RerankResponse),
    ("post", "/engines/{engine}/v1/embeddings", "Embeddings on one engine",
     EmbeddingCreateRequest, CreateEmbeddingResponse),
    ("post", "/engines/{engine}/v1/rerank", "Rerank on one engine", RerankCreateRequest,
     RerankResponse),
    ("post", "/engines/{engine}/rerank", "Rerank on one engine", RerankCreateRequest,
     RerankResponse),
    ("post", "/api/embed", "Embed (Ollama)", OllamaEmbedRequest, None),
    ("post", "/api/embeddings", "Embed one prompt (Ollama's older route)",
     OllamaEmbeddingsRequest, None),
    ("post", "/v1/messages", "Create a message (Anthropic)", MessageCreateParams, Message),
    ("post", "/v1/responses", "Create a response", ResponseCreateParams, None),
    ("get", "/v1/responses/{response_id}", "Retrieve a stored response", None, None),
    ("delete", "/v1/responses/{response_id}", "Delete a stored response", None, None),
    ("get", "/v1/responses/{response_id}/input_items", "A stored response's input", None, None),
    ("get", "/api/version", "Version (Ollama)", None, None),
    ("get", "/api/tags", "List models (Ollama)", None, None),
    ("post", "/api/show", "Show a model (Ollama)", OllamaModelRequest, None),
    ("get", "/api/ps", "Loaded models (Ollama)", None, None),
    ("post", "/api/chat", "Chat (Ollama)", OllamaChatRequest, None),
    ("post", "/api/generate", "Generate (Ollama)", OllamaGenerateRequest, None),
    ("post", "/api/pull", "Pull from the Hugging Face Hub (Ollama)", OllamaPullRequest, None),
    ("delete", "/api/delete", "Delete a model (Ollama)", OllamaModelRequest, None),
    ("post", "/v1/messages/count_tokens", "Count a message's tokens (Anthropic)",
     CountTokensParams, TokenCount),
    ("get", "/engines/{engine}/v1/models", "List the models of one engine", None, ModelList),
    ("get", "/engines/{engine}/v1/models/{model}", "Retrieve a model", None, Model),
    ("post", "/engines/{engine}/v1/chat/completions", "Chat on one engine",
     ChatCompletionRequest, ChatCompletion),
    ("post", "/engines/{engine}/v1/completions", "Complete on one engine", CompletionRequest,
     Completion),
    ("post", "/exp/v1/worker/generate", "Run a worker job", WorkerRequest, WorkerResponse),
    ("post", "/exp/v1/worker/extract-memory-candidates", "Propose memory candidates",
     WorkerRequest, WorkerResponse),
    ("post", "/exp/v1/worker/condense-notification", "Condense a notification", WorkerRequest,
     WorkerResponse),
    ("post", "/v1/worker/generate", "Run a worker job (original contract)", WorkerRequest,
     WorkerResponse),
    ("post", "/v1/worker/extract-memory-candidates", "Memory candidates (original contract)",
     WorkerRequest, WorkerResponse),
    ("post", "/v1/worker/condense-notification", "Notification (original contract)",
     WorkerRequest, WorkerResponse),
    ("post", "/v1/audio/transcriptions", "Transcribe audio (a multipart form)",
     TranscriptionUpload, TranscriptionJson),
    ("post", "/v1/audio/translations", "Translate audio into English text (a multipart form)",
     TranslationUpload, TranscriptionJson),
    ("post", "/engines/{engine}/v1/audio/transcriptions", "Transcribe audio on one engine",
     TranscriptionUpload, TranscriptionJson),
    ("post", "/engines/{engine}/v1/audio/translations", "Translate audio on one engine",
     TranslationUpload, TranscriptionJson),
    ("get", "/models", "The model store", None, None),
    ("post", "/models/pull", "Pull a model from the Hugging Face Hub", PullRequest, None),
    ("post", "/models/import", "Import a local GGUF file or IR directory", ImportRequest, None),
    ("delete", "/models/{model}", "Delete a stored model", None, None),
    ("get", "/healthz", "Health", None, None),
    ("get", "/livez", "Liveness probe: 200 while the process answers", None, None),
    ("get", "/readyz", "Readiness probe: 503 with Retry-After while loading, draining or full", None, None),
    ("get", "/engines/status", "Engine status", None, None),
    ("get", "/engines/ps", "Loaded runners", None, None),
    ("post", "/engines/unload", "Unload runners", UnloadRequest, UnloadResponse),
    ("get", "/metrics", "Prometheus metrics", None, None),
    ("get", "/openapi.json", "This document", None, None),
]  # fmt: skip


# Request bodies sent as multipart forms (a file and fields), not JSON.
MULTIPART = (TranscriptionUpload, TranslationUpload)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_document() -> dict[str, Any]:
    models = {m for _, _, _, request, answer in ROUTES for m in (request, answer) if m}
    models.add(ErrorResponse)
    _, definitions = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    error = {"description": "An error, in OpenAI's shape",
             "content": {"application/json": {"schema": _ref(ErrorResponse)}}}  # fmt: skip
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, request, answer in ROUTES:
        ok: dict[str, Any] = {"description": "Success"}
        if answer is not None:
            ok["content"] = {"application/json": {"schema": _ref(answer)}}
        operation: dict[str, Any] = {"summary": summary,
                                     "responses": {"200": ok, "default": error}}  # fmt: skip
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("engine", "model")
            if f"{{{name}}}" in path
        ]
        if parameters:
            operation["parameters"] = parameters
        if request is not None:
            media = "multipart/form-data" if request in MULTIPART else "application/json"
            operation["requestBody"] = {"required": True,
                                        "content": {media: {"schema": _ref(request)}}}  # fmt: skip
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "ovrunner", "version": __version__},
        "paths": paths,
        "components": {"schemas": definitions["$defs"]},
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(build_document())
