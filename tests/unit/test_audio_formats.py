"""Audio in (every container OpenAI accepts, decoded to 16 kHz mono) and transcripts out
(SubRip, WebVTT, verbose JSON), without a model."""

from __future__ import annotations

import numpy as np
import pytest

from ovrunner.audio_input import SAMPLE_RATE, AudioTooLongError, decode_audio
from ovrunner.engines.base import Transcript, TranscriptSegment, TranscriptWord
from ovrunner.errors import InvalidValueError
from ovrunner.protocol.audio import compression_ratio, subtitles, verbose_json
from tests.support.speech import CONTAINERS, encode, silence_wav

TRANSCRIPT = Transcript(
    text=" Hello there. General Kenobi.",
    language="en",
    duration=3725.5,
    segments=(TranscriptSegment(0.0, 1.5, " Hello there."),
              TranscriptSegment(3723.25, 3725.004, " General Kenobi.")),
    words=(TranscriptWord(" Hello", 0.0, 0.7), TranscriptWord(" there.", 0.7, 1.5)),
)  # fmt: skip


def test_subrip_numbers_its_cues_and_uses_commas() -> None:
    assert subtitles(TRANSCRIPT, "srt") == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n01:02:03,250 --> 01:02:05,004\nGeneral Kenobi.\n"
    )


def test_webvtt_has_its_header_and_uses_dots() -> None:
    assert subtitles(TRANSCRIPT, "vtt") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
        "01:02:03.250 --> 01:02:05.004\nGeneral Kenobi.\n"
    )


def test_verbose_json_names_the_language_and_leaves_out_what_is_not_measured() -> None:
    answer = verbose_json(TRANSCRIPT, task="transcribe", temperature=0.0, segments=True,
                          words=False).model_dump(exclude_none=True)  # fmt: skip
    assert answer["language"] == "english" and answer["text"] == "Hello there. General Kenobi."
    assert answer["usage"] == {"type": "duration", "seconds": 3726}
    assert "words" not in answer
    segment = answer["segments"][1]
    assert segment["seek"] == 372325 and segment["id"] == 1
    assert not {"tokens", "avg_logprob", "no_speech_prob"} & set(segment)


def test_compression_ratio_grows_with_repetition() -> None:
    assert compression_ratio("la " * 200) > 10 > compression_ratio("Hello there, General Kenobi.")


def _tone(seconds: float, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("extension", sorted(CONTAINERS))
def test_every_container_decodes_to_16_khz_mono(extension: str) -> None:
    samples = decode_audio(encode(_tone(2.0), 22050, extension), max_seconds=60)
    assert samples.dtype == np.float32
    # Lossy codecs pad their frames (AAC by about 0.1 s).
    assert abs(len(samples) / SAMPLE_RATE - 2.0) < 0.2
    assert 0.2 < np.abs(samples).max() < 0.4


@pytest.mark.parametrize(
    ("data", "wording"),
    [(b"", "empty"), (b"RIFF....WAVEjunk" * 100, "not audio"), (b"\x00" * 4096, "not audio")],
)
def test_what_is_not_audio_is_a_400_naming_the_file(data: bytes, wording: str) -> None:
    with pytest.raises(InvalidValueError, match=wording) as caught:
        decode_audio(data, max_seconds=60)
    assert caught.value.param == "file"


@pytest.mark.parametrize("extension", ["mp3", "webm"])
def test_a_file_cut_short_is_refused_as_truncated(extension: str) -> None:
    whole = encode(_tone(20.0), 22050, extension)
    assert len(decode_audio(whole, max_seconds=60)) / SAMPLE_RATE == pytest.approx(20, abs=0.2)
    with pytest.raises(InvalidValueError, match=r"truncated: its header declares 20\.\d s"):
        decode_audio(whole[: len(whole) // 2], max_seconds=60)


def test_audio_over_the_bound_is_refused_from_its_header() -> None:
    with pytest.raises(AudioTooLongError, match="61 s long; .* at most 60 s"):
        decode_audio(silence_wav(61, rate=8000), max_seconds=60)
