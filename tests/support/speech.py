"""Speech to test with: Debian's espeak-ng speaks a sentence to a WAV file, and PyAV (the
decoder the server uses, whose wheel also encodes) writes it in each container OpenAI's
audio routes accept."""

from __future__ import annotations

import io
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from tests.support.system import require_program

# IEEE's Harvard sentences (1969), phonetically balanced, read by espeak-ng's en-us voice.
HARVARD = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
)

# extension -> (muxer, encoder, sample rate, layout, encoder options)
CONTAINERS = {
    "wav": ("wav", "pcm_s16le", 16000, "mono", {}),
    "flac": ("flac", "flac", 16000, "mono", {}),
    "mp3": ("mp3", "libmp3lame", 16000, "mono", {}),
    "mpga": ("mp3", "libmp3lame", 16000, "mono", {}),
    "mpeg": ("mpeg", "mp2", 16000, "mono", {}),
    "ogg": ("ogg", "libopus", 48000, "mono", {}),
    # FFmpeg's own Vorbis encoder writes stereo only, and asks to be allowed (experimental).
    "oga": ("ogg", "vorbis", 44100, "stereo", {"strict": "experimental"}),
    "webm": ("webm", "libopus", 48000, "mono", {}),
    "m4a": ("ipod", "aac", 16000, "mono", {}),
    "mp4": ("mp4", "aac", 16000, "mono", {}),
}


def speak(text: str) -> bytes:
    """`text` spoken by espeak-ng, as WAV bytes (22,050 Hz mono)."""
    espeak = require_program("espeak-ng", "espeak-ng")
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "speech.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
        return path.read_bytes()


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate, from 16-bit WAV bytes."""
    with wave.open(io.BytesIO(data)) as reader:
        frames = reader.readframes(reader.getnframes())
        rate = reader.getframerate()
    return np.frombuffer(frames, np.int16).astype(np.float32) / 32768, rate


def silence_wav(seconds: float, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()


def encode(samples: np.ndarray, rate: int, extension: str, *, bit_rate: int | None = None,
           out_rate: int | None = None) -> bytes:  # fmt: skip
    """Samples (mono float32) in the container `extension` (at its codec's usual rate and bit
    rate unless given)."""
    import av

    muxer, codec, usual_rate, layout, options = CONTAINERS[extension]
    out_rate = out_rate or usual_rate
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=muxer) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout, options=options)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout,
                                      rate=out_rate, frame_size=stream.codec_context.frame_size or None)  # fmt: skip
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()
