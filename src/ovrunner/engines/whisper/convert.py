"""A Whisper model in CTranslate2's format becomes the OpenVINO IR `WhisperPipeline` opens.

No torch and no `ctranslate2`: the weights are read with numpy (`ctranslate2_files`), the
encoder and the stateful decoder are built op by op (`encoder_graph`, `decoder_graph`), the
tokenizer becomes IR through transformers' fast tokenizer and openvino-tokenizers, and the
Hugging Face configs WhisperPipeline reads are written from what CTranslate2's `config.json`
and vocabulary say (language and task tokens, suppressed tokens, alignment heads).

It runs in a process of its own, `python -m ovrunner.engines.whisper.convert SRC TARGET`,
printing JSON progress lines as the GGUF converter does (`conversion.py` reads them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from ovrunner.engines.model_files import DETOKENIZER_XML, TOKENIZER_XML
from ovrunner.engines.openvino.gguf_to_ir import Progress
from ovrunner.engines.whisper.ctranslate2_files import CTranslate2Whisper, read
from ovrunner.engines.whisper.files import DECODER_XML, ENCODER_XML

# Whisper's audio front end (the log-mel features WhisperPipeline computes).
SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30
HOP = 160
N_FFT = 400


def convert(source: Path, target: Path, progress: Progress) -> None:
    import openvino

    model = read(source)
    progress("build")
    encoder = _build("encoder", model)
    decoder = _build("decoder", model)
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    progress("save")
    # The weights are f16 already (CTranslate2's float16), kept as they are.
    openvino.save_model(encoder, work / ENCODER_XML, compress_to_fp16=False)
    openvino.save_model(decoder, work / DECODER_XML, compress_to_fp16=False)
    save_tokenizer(source, model, work)
    write_configs(model, work)
    work.rename(target)
    progress("done", weights="f16")


def _build(part: str, model: CTranslate2Whisper) -> Any:
    if part == "encoder":
        from ovrunner.engines.whisper.encoder_graph import build_encoder

        return build_encoder(model)
    from ovrunner.engines.whisper.decoder_graph import build_decoder

    return build_decoder(model)


def special_ids(model: CTranslate2Whisper) -> dict[str, int]:
    """The ids of Whisper's control tokens, looked up in the model's own vocabulary."""
    index = {token: i for i, token in enumerate(model.vocabulary)}

    def find(token: str) -> int:
        if token not in index:
            raise ValueError(f"the vocabulary has no {token}")
        return index[token]

    return {
        "eos": find("<|endoftext|>"),
        "sot": find("<|startoftranscript|>"),
        "transcribe": find("<|transcribe|>"),
        "translate": find("<|translate|>"),
        "prev": find("<|startofprev|>"),
        "no_timestamps": find("<|notimestamps|>"),
    }


def write_configs(model: CTranslate2Whisper, target: Path) -> None:
    """`config.json`, `generation_config.json` and `preprocessor_config.json` as Hugging
    Face's Whisper repositories carry them, which WhisperPipeline reads."""
    dims, config, ids = model.dims, model.config, special_ids(model)
    lang_ids = [int(i) for i in config.get("lang_ids", [])]
    multilingual = len(lang_ids) > 1
    hf_config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": dims.vocab_size,
        "num_mel_bins": dims.mel_bins,
        "d_model": dims.width,
        "encoder_layers": dims.encoder_layers,
        "encoder_attention_heads": dims.heads,
        "decoder_layers": dims.decoder_layers,
        "decoder_attention_heads": dims.heads,
        "max_source_positions": dims.audio_positions,
        "max_target_positions": dims.text_positions,
        "bos_token_id": ids["eos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["eos"],
        "decoder_start_token_id": ids["sot"],
        "is_encoder_decoder": True,
        "converted_from": {"format": "ctranslate2"},
    }
    generation = {
        "alignment_heads": [list(pair) for pair in config.get("alignment_heads", [])],
        "begin_suppress_tokens": [int(i) for i in config.get("suppress_ids_begin", [])],
        "suppress_tokens": [int(i) for i in config.get("suppress_ids", [])],
        "bos_token_id": ids["eos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["eos"],
        "decoder_start_token_id": ids["sot"],
        "no_timestamps_token_id": ids["no_timestamps"],
        "prev_sot_token_id": ids["prev"],
        "is_multilingual": multilingual,
        "lang_to_id": {model.vocabulary[i]: i for i in lang_ids} if multilingual else {},
        "task_to_id": {"transcribe": ids["transcribe"], "translate": ids["translate"]},
        "max_initial_timestamp_index": 50,
        # The decoder's position table bounds every window's tokens.
        "max_length": dims.text_positions,
        "return_timestamps": False,
    }
    frames = WINDOW_SECONDS * SAMPLE_RATE // HOP
    preprocessor = {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": dims.mel_bins,
        "sampling_rate": SAMPLE_RATE,
        "hop_length": HOP,
        "n_fft": N_FFT,
        "chunk_length": WINDOW_SECONDS,
        "n_samples": WINDOW_SECONDS * SAMPLE_RATE,
        "nb_max_frames": frames,
        "padding_value": 0.0,
        "return_attention_mask": False,
    }
    for name, value in (("config.json", hf_config), ("generation_config.json", generation),
                        ("preprocessor_config.json", preprocessor)):  # fmt: skip
        (target / name).write_text(json.dumps(value, indent=2))


def save_tokenizer(source: Path, model: CTranslate2Whisper, target: Path) -> None:
    """Tokenizer and detokenizer IR from `tokenizer.json`, with the timestamp tokens the
    vocabulary has beyond it (`<|0.00|>` ... `<|30.00|>`) added as special tokens, so every
    id the decoder can produce is known to the detokenizer."""
    import os

    import openvino
    from openvino_tokenizers import convert_tokenizer

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(source / "tokenizer.json"),
                                        bos_token=eos, eos_token=eos, pad_token=eos,
                                        unk_token=eos)  # fmt: skip
    missing = model.vocabulary[len(tokenizer) :]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if len(tokenizer) != model.dims.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens, the model {model.dims.vocab_size}"
        )
    encoder, decoder = convert_tokenizer(tokenizer, with_detokenizer=True)
    openvino.save_model(encoder, str(target / TOKENIZER_XML))
    openvino.save_model(decoder, str(target / DETOKENIZER_XML))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert a CTranslate2 Whisper model to OpenVINO IR"
    )
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    convert(args.source, args.target, Progress())
    return 0


if __name__ == "__main__":
    sys.exit(main())
