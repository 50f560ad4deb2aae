"""Fixtures shared by the three rings: a tiny model built by our own code, scratch stores,
a throwaway PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ovrunner.engines.base import ModelFormat, ModelRef
from ovrunner.engines.tiny_model import build_tiny_gguf
from tests.support.postgres import PostgresCluster


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tiny_model(tiny_gguf: Path) -> ModelRef:
    return ModelRef("tiny-llama", tiny_gguf, ModelFormat.GGUF, "openvino")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL server for the session; each test makes its own database."""
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()
