"""What an encoder's own files say: its mode, pooling, normalization and window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovrunner.engines.base import Mode
from ovrunner.engines.encoder_files import detect_mode, embedding_config
from ovrunner.errors import ModelLoadFailedError

TRANSFORMER = {"type": "sentence_transformers.models.Transformer", "path": ""}
POOLING = {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}
NORMALIZE = {"type": "sentence_transformers.models.Normalize", "path": "2_Normalize"}


def _folder(tmp_path: Path, modules: list[dict[str, str]], pooling: dict[str, object]) -> Path:
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 384, **pooling})
    )
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    return tmp_path


def test_a_sentence_transformers_folder_is_an_embedding_model(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [TRANSFORMER, POOLING, NORMALIZE],
                     {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False})  # fmt: skip
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    assert detect_mode(folder) is Mode.EMBEDDING
    config = embedding_config(folder)
    assert (config.pooling, config.normalize, config.window, config.dimensions) == (
        "MEAN", True, 256, 384,
    )  # fmt: skip


def test_without_normalize_and_sentence_bert_config(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [TRANSFORMER, POOLING], {"pooling_mode_cls_token": True})
    config = embedding_config(folder)
    assert (config.pooling, config.normalize, config.window) == ("CLS", False, 512)


@pytest.mark.parametrize(
    ("modules", "pooling", "complaint"),
    [
        ([TRANSFORMER, POOLING], {"pooling_mode_max_tokens": True}, "pooling_mode_max_tokens"),
        ([TRANSFORMER, POOLING], {}, "pooling none"),
        ([TRANSFORMER, POOLING, {"type": "sentence_transformers.models.Dense", "path": "2"}],
         {"pooling_mode_mean_tokens": True}, "Dense"),
    ],
)  # fmt: skip
def test_what_the_pipeline_cannot_do_is_refused_at_load(
    tmp_path: Path, modules: list[dict[str, str]], pooling: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ModelLoadFailedError, match=complaint):
        embedding_config(_folder(tmp_path, modules, pooling))


def test_cross_encoders_and_other_models(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["XLMRobertaForSequenceClassification"]})
    )
    assert detect_mode(tmp_path) is Mode.RERANKING
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert detect_mode(tmp_path) is Mode.COMPLETION
    assert detect_mode(tmp_path / "model.gguf") is Mode.COMPLETION
