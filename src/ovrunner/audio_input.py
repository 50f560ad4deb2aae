"""Uploaded audio to what Whisper hears: 16 kHz mono float32 samples.

PyAV decodes every container OpenAI's audio routes accept (flac, m4a, mp3, mp4, mpeg, mpga,
oga, ogg, wav, webm) with the FFmpeg its wheel bundles; no system FFmpeg is needed. The
duration bound is checked from the container's header before any decoding, and again on the
samples decoded (a header may lie or say nothing). Decoding is CPU work: callers run it in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import io

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
            _check_declared_duration(container, stream, max_seconds, param)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            decoded = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    decoded += chunks[-1].size
                if decoded > limit:
                    raise _too_long(decoded / SAMPLE_RATE, max_seconds, param)
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
    return samples.astype(np.float32, copy=False)


def _check_declared_duration(container: object, stream: object, max_seconds: float,
                             param: str) -> None:  # fmt: skip
    import av

    seconds = None
    if getattr(container, "duration", None) is not None:
        seconds = container.duration / av.time_base  # type: ignore[attr-defined]
    elif getattr(stream, "duration", None) is not None and stream.time_base is not None:  # type: ignore[attr-defined]
        seconds = float(stream.duration * stream.time_base)  # type: ignore[attr-defined]
    if seconds is not None and seconds > max_seconds:
        raise _too_long(seconds, max_seconds, param)


def _too_long(seconds: float, max_seconds: float, param: str) -> AudioTooLongError:
    return AudioTooLongError(
        f"the audio is {seconds:.0f} s long; this server transcribes at most {max_seconds:.0f} s "
        "per request (setting audio_max_seconds)",
        param=param,
    )
