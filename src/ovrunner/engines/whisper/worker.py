"""WhisperPipeline inside its engine process (`engines/openvino/encoder_process.py` runs it):
one transcription at a time, text streamed as it is decoded, stopped when the caller cancels.

The pipeline is built with word timestamps on when the model's `generation_config.json` names
its alignment heads (GenAI patches the decoder for them only at construction; measured here,
decoding is no slower with them on), so one pipeline serves every request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ovrunner.engines.base import TranscriptionRequest


class WhisperWorker:
    def __init__(self, path: Path, device: str, properties: dict[str, Any]) -> None:
        import openvino_genai as genai

        self.word_timestamps = _has_alignment_heads(path)
        self._pipeline = genai.WhisperPipeline(str(path), device,
                                               word_timestamps=self.word_timestamps, **properties)  # fmt: skip
        config = self._pipeline.get_generation_config()
        self.languages = sorted(key.strip("<|>") for key in config.lang_to_id)

    def info(self, _context: Any) -> dict[str, Any]:
        return {"word_timestamps": self.word_timestamps, "languages": self.languages}

    def transcribe(self, context: Any, request: TranscriptionRequest) -> dict[str, Any]:
        """Decode the request's samples; its text goes to `context.emit` as it comes when
        the request streams."""
        config = self._pipeline.get_generation_config()
        config.task = request.task
        if request.language:
            config.language = f"<|{request.language}|>"
        if request.prompt:
            config.initial_prompt = self._prompt_tail(request.prompt, config.max_length)
        sampled = request.temperature > 0
        config.do_sample = sampled
        if sampled:
            config.temperature = request.temperature
        config.num_beams = 1 if sampled else request.beams
        # Words are timed within their segments.
        config.return_timestamps = request.segment_timestamps or request.word_timestamps
        config.word_timestamps = request.word_timestamps

        def streamer(text: str) -> bool:  # True stops the decoding
            if request.stream and text:
                context.emit(text)
            return bool(context.cancelled())

        result = self._pipeline.generate(request.samples.tolist(), config, streamer)
        return {
            "text": result.texts[0] if result.texts else "",
            "language": getattr(result, "language", None) or request.language,
            "segments": [(c.start_ts, c.end_ts, c.text) for c in (result.chunks or [])],
            "words": [
                (w.word, w.start_ts, w.end_ts) for w in (getattr(result, "words", None) or [])
            ],
        }

    def _prompt_tail(self, prompt: str, window: int) -> str:
        """The end of `prompt` that fits before the audio's text: Whisper conditions on at most
        half its window less one token (223 of 448), the most recent text, as its own
        `transcribe` keeps it; the pipeline itself refuses a longer one outright."""
        keep = window // 2 - 1
        tokenizer = self._pipeline.get_tokenizer()
        ids = [int(i) for i in tokenizer.encode(prompt, add_special_tokens=False).input_ids.data[0]]
        return prompt if len(ids) <= keep else str(tokenizer.decode(ids[-keep:]))


def _has_alignment_heads(path: Path) -> bool:
    try:
        config = json.loads((path / "generation_config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("alignment_heads"))
