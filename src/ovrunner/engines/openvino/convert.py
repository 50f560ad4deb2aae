"""Build an OpenVINO IR directory for an encoder from an ONNX graph and a sentence-transformers
folder, with no torch: OpenVINO reads the ONNX itself, and openvino-tokenizers converts the
folder's `tokenizer.json` (through transformers' fast tokenizer, which needs no torch).

The directory is what `TextEmbeddingPipeline` and `TextRerankPipeline` open: the model, its
tokenizer and detokenizer IR, and the sentence-transformers files that say how it pools.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ovrunner.engines.encoder_files import SENTENCE_TRANSFORMERS_FILES
from ovrunner.engines.model_files import DETOKENIZER_XML, IR_XML, TOKENIZER_XML
from ovrunner.errors import ModelLoadFailedError

log = logging.getLogger(__name__)


def encoder_ir(onnx: Path, folder: Path, target: Path, *, pair_inputs: bool = False) -> Path:
    """Write the IR of `onnx` with the tokenizer and config files of `folder` to `target`.

    Staged beside `target` and renamed into place, so an interrupted conversion leaves nothing
    a later load would mistake for a model. `pair_inputs` builds a tokenizer that takes
    (query, document) pairs, as a cross-encoder's does.
    """
    import openvino

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model = openvino.convert_model(str(onnx))
        # Weights as they are: fp16 compression would change every vector a little.
        openvino.save_model(model, str(staging / IR_XML), compress_to_fp16=False)
        save_tokenizer(folder, staging, pair_inputs=pair_inputs)
        for name in SENTENCE_TRANSFORMERS_FILES:
            if (folder / name).is_file():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, staging / name)
        staging.rename(target)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelLoadFailedError(f"could not convert {onnx.name} to OpenVINO IR: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s to OpenVINO IR in %s", onnx.name, target)
    return target


def save_tokenizer(folder: Path, target: Path, *, pair_inputs: bool = False) -> None:
    """Convert `folder/tokenizer.json` (with the special tokens its `tokenizer_config.json`
    names) to tokenizer and detokenizer IR in `target`."""
    import openvino
    from openvino_tokenizers import convert_tokenizer

    # Only its tokenizer is used: its advice that torch is missing would alarm for nothing.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import PreTrainedTokenizerFast

    config = {}
    if (folder / "tokenizer_config.json").is_file():
        config = json.loads((folder / "tokenizer_config.json").read_text())
    special = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **special)
    encoder, decoder = convert_tokenizer(
        tokenizer, with_detokenizer=True, number_of_inputs=2 if pair_inputs else 1
    )
    openvino.save_model(encoder, str(target / TOKENIZER_XML))
    openvino.save_model(decoder, str(target / DETOKENIZER_XML))
