"""What an encoder model's own files say: its mode, and for an embedding model its pooling,
normalization, window and width, read from the sentence-transformers files beside its weights
(`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`), never assumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines.base import Mode
from ovrunner.engines.whisper.files import is_whisper_ir
from ovrunner.errors import ModelLoadFailedError

# The files an embedding model's directory keeps from its sentence-transformers folder.
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "config.json",
    "1_Pooling/config.json",
)
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
_TRANSFORMER = "sentence_transformers.models.Transformer"
# Pooling modes OpenVINO GenAI's TextEmbeddingPipeline has, by their sentence-transformers key.
POOLING_MODES = {
    "pooling_mode_cls_token": "CLS",
    "pooling_mode_mean_tokens": "MEAN",
    "pooling_mode_lasttoken": "LAST_TOKEN",
}


@dataclass(frozen=True)
class EmbeddingConfig:
    pooling: str  # a TextEmbeddingPipeline.PoolingType name
    normalize: bool
    window: int  # tokens per input, special tokens included
    dimensions: int


def detect_mode(path: Path) -> Mode:
    """Embedding for a sentence-transformers folder (a Pooling module), reranking for a
    sequence-classification model (a cross-encoder), completion for anything else."""
    if not path.is_dir():
        return Mode.COMPLETION
    if is_whisper_ir(path):
        return Mode.TRANSCRIPTION
    modules = _read_json(path / "modules.json", missing={})
    if any(m.get("type") == _POOLING for m in modules if isinstance(m, dict)):
        return Mode.EMBEDDING
    config = _read_json(path / "config.json", missing={})
    architectures = config.get("architectures") or [] if isinstance(config, dict) else []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return Mode.RERANKING
    return Mode.COMPLETION


def embedding_config(path: Path) -> EmbeddingConfig:
    """How the embedding model in `path` pools, normalizes and how long its inputs may be."""
    modules = _read_json(path / "modules.json")
    kinds = [m.get("type") for m in modules]
    unsupported = [k for k in kinds if k not in (_TRANSFORMER, _POOLING, _NORMALIZE)]
    if unsupported:
        raise ModelLoadFailedError(
            f"{path.name}: the sentence-transformers module(s) {', '.join(map(str, unsupported))} "
            "cannot run in OpenVINO's embedding pipeline"
        )
    pooling_dir = next(m.get("path", "") for m in modules if m.get("type") == _POOLING)
    pooling = _read_json(path / pooling_dir / "config.json")
    chosen = [
        POOLING_MODES.get(k) for k, on in pooling.items() if k.startswith("pooling_mode") and on
    ]
    if len(chosen) != 1 or chosen[0] is None:
        named = [k for k, on in pooling.items() if k.startswith("pooling_mode") and on]
        raise ModelLoadFailedError(
            f"{path.name}: pooling {', '.join(named) or 'none'} is not one OpenVINO's embedding "
            f"pipeline has ({', '.join(POOLING_MODES)})"
        )
    return EmbeddingConfig(
        pooling=chosen[0],
        normalize=_NORMALIZE in kinds,
        window=encoder_window(path),
        dimensions=int(pooling["word_embedding_dimension"]),
    )


def encoder_window(path: Path) -> int:
    """Tokens per input: sentence-transformers' `max_seq_length` (what the model was trained
    on), else the position embeddings of its `config.json`."""
    sentence_bert = _read_json(path / "sentence_bert_config.json", missing={})
    if isinstance(sentence_bert, dict) and sentence_bert.get("max_seq_length"):
        return int(sentence_bert["max_seq_length"])
    config = _read_json(path / "config.json")
    try:
        return int(config["max_position_embeddings"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadFailedError(
            f"{path.name}: config.json has no max_position_embeddings"
        ) from exc


def _read_json(path: Path, missing: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if missing is not None:
            return missing
        raise ModelLoadFailedError(f"{path.parent.name}: {path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadFailedError(f"{path.parent.name}: {path.name} is unreadable: {exc}") from exc
