"""Wire models of the model store routes (`/models/pull`, `/models/import`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class PullRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    repo: str
    name: str | None = None
    file: str | None = None
    revision: str | None = None
    engine: str = "openvino"
    # What a GGUF's weights become (the `weight_format` setting if unset).
    weight_format: Literal["auto", "int4", "int8", "f16"] | None = None
    # Conversion progress as NDJSON lines, the stored model's summary last.
    stream: bool = False


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    # A path on the server's own machine; reaching this route off loopback needs the API key.
    path: str
    name: str | None = None
    engine: str = "openvino"
    weight_format: Literal["auto", "int4", "int8", "f16"] | None = None
    stream: bool = False
