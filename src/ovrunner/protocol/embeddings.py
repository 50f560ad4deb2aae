"""Wire models of the encoder routes: OpenAI's `/v1/embeddings`, and `/v1/rerank` in the
shape llama.cpp, vLLM and Jina serve (Cohere's fields). Bounds on the number of inputs are
the route's (`Settings.embedding_max_inputs`); the window is the model's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_Request = ConfigDict(extra="allow", allow_inf_nan=False)
TokenIds = list[int]


class EmbeddingCreateRequest(BaseModel):
    model_config = _Request
    model: str
    # A text, texts, one input's token ids, or several inputs' token ids (OpenAI's four forms).
    input: str | list[str] | TokenIds | list[TokenIds]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    # ovrunner's: cut an input longer than the model's window instead of refusing it.
    truncate: bool = False

    def texts(self) -> list[str] | None:
        """The inputs as texts, or None when they are token ids."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, str) for item in self.input):
            return list(self.input)  # type: ignore[arg-type]
        return None

    def token_ids(self) -> list[list[int]]:
        if all(isinstance(item, int) for item in self.input):
            return [list(self.input)]  # type: ignore[arg-type]
        return [item for item in self.input if isinstance(item, list)]

    def count(self) -> int:
        texts = self.texts()
        return len(texts) if texts is not None else len(self.token_ids())


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # a base64 string of little-endian float32 when asked


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class RerankCreateRequest(BaseModel):
    model_config = _Request
    model: str
    query: str
    documents: list[str | RerankDocument] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    truncate: bool = False

    def document_texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    model: str
    results: list[RerankResult]
    usage: EmbeddingUsage
