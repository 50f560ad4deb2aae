"""What a Whisper model's files say, read without loading it: the OpenVINO IR directory
WhisperPipeline opens (Intel's `OpenVINO/whisper-*-ov` repositories, or what ovrunner
converts from CTranslate2's format)."""

from __future__ import annotations

import json
from pathlib import Path

ENCODER_XML = "openvino_encoder_model.xml"
DECODER_XML = "openvino_decoder_model.xml"
# Whisper's decoder window when a config does not say (every released size has 448).
DEFAULT_TEXT_POSITIONS = 448


def is_whisper_ir(directory: Path) -> bool:
    return (directory / ENCODER_XML).is_file() and (directory / DECODER_XML).is_file()


def text_window(directory: Path) -> int:
    """Tokens the decoder takes per 30 s window (its position table)."""
    try:
        config = json.loads((directory / "config.json").read_text())
        return int(config.get("max_target_positions", DEFAULT_TEXT_POSITIONS))
    except (OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_TEXT_POSITIONS
