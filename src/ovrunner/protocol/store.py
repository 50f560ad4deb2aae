"""Wire models of the model store routes (`/models/pull`, `/models/import`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PullRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    repo: str
    name: str | None = None
    file: str | None = None
    revision: str | None = None
    engine: str = "openvino"


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    # A path on the server's own machine; reaching this route off loopback needs the API key.
    path: str
    name: str | None = None
    engine: str = "openvino"
