from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ovrunner.engines.base import LoadConfig, ModelRef
from ovrunner.engines.openvino.batching import OpenVINOEngine, OpenVINORunner


def load_private_runner(tiny_model: ModelRef, directory: Path) -> OpenVINORunner:
    """The tiny model loaded from a private copy: the first load writes the converted IR
    beside the GGUF."""
    copy = directory / tiny_model.path.name
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef(tiny_model.id, copy, tiny_model.format, tiny_model.engine)
    runner = OpenVINOEngine().load(model, LoadConfig(max_queue=16))
    assert isinstance(runner, OpenVINORunner)
    return runner


@pytest.fixture(scope="module")
def tiny_runner(
    tiny_model: ModelRef, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenVINORunner]:
    runner = load_private_runner(tiny_model, tmp_path_factory.mktemp("runner"))
    yield runner
    runner.close()
