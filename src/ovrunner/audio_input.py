"""Uploaded audio to what Whisper hears: 16 kHz mono float32 samples.

PyAV decodes every container OpenAI's audio routes accept (flac, m4a, mp3, mp4, mpeg, mpga,
oga, ogg, wav, webm) with the FFmpeg its wheel bundles; no system FFmpeg is needed. The
duration bound is checked from the container's header before any decoding, and again on the
samples decoded (a header may lie or say nothing). A file that holds much less audio than its
header declares was cut short (an upload interrupted, a copy not finished): refused, since its
transcript would silently miss the rest. Decoding is CPU work: callers run it in a worker
thread, never on the event loop.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ovrunner.errors import InvalidValueError

SAMPLE_RATE = 16_000


class AudioTooLongError(InvalidValueError):
    pass


def decode_audio(data: bytes, *, max_seconds: float, param: str = "file") -> np.ndarray:
    """The audio in `data` as mono float32 samples at 16 kHz; a 400 naming what is wrong."""
    import av

    if not data:
        raise InvalidValueError("the audio file is empty", param=param)
    chunks: list[np.ndarray] = []
    limit = int((max_seconds + 1) * SAMPLE_RATE)
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidValueError("the file holds no audio stream", param=param)
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > max_seconds:
                raise _too_long(declared, max_seconds, param)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            count = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    count += chunks[-1].size
                if count > limit:
                    raise _too_long(count / SAMPLE_RATE, max_seconds, param)
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as exc:
        raise InvalidValueError(
            "the file is not audio this server can decode (flac, m4a, mp3, mp4, mpeg, mpga, "
            f"oga, ogg, wav, webm): {exc.strerror or exc}",
            param=param,
        ) from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise InvalidValueError("the file holds no audio samples", param=param)
    decoded = samples.size / SAMPLE_RATE
    if declared is not None and declared - decoded > max(1.0, 0.05 * declared):
        raise InvalidValueError(
            f"the file is truncated: its header declares {declared:.1f} s of audio and it "
            f"holds {decoded:.1f} s",
            param=param,
        )
    return samples.astype(np.float32, copy=False)


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """The audio's length as the file's header states it (the stream's own, else the
    container's), or None when it says nothing."""
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


def _too_long(seconds: float, max_seconds: float, param: str) -> AudioTooLongError:
    return AudioTooLongError(
        f"the audio is {seconds:.0f} s long; this server transcribes at most {max_seconds:.0f} s "
        "per request (setting audio_max_seconds)",
        param=param,
    )
