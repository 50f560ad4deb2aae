"""Wire models of the operations routes, as Docker Model Runner names them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UnloadRequest(BaseModel):
    """`POST /engines/unload`: the models whose runners to unload, or all of them."""

    model_config = ConfigDict(extra="allow")
    models: list[str] = Field(default_factory=list, max_length=256)
    all: bool = False


class UnloadResponse(BaseModel):
    unloaded_runners: int
