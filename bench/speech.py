"""Speech to text: ovrunner against faster-whisper (CTranslate2) on the same weights and audio.

The weights: Whisper base as published in CTranslate2's format (tests/support/whisper_model.py),
read by faster-whisper as they are and imported into ovrunner (converted to OpenVINO IR by its
own converter). The audio: espeak-ng reading IEEE's Harvard sentences, each alone and in two
clips over 30 s. For each side, in one run:
- word error rate against the text that was spoken (jiwer), English given, no VAD;
- speed as audio seconds per wall second, one request at a time and four at once.
ovrunner is served over HTTP (the SDK's multipart upload included in its time); faster-whisper
is called in-process with two threads (this machine's cores), int8 and float32.

    python -m bench.speech [--beams 5] [--out bench/results/speech.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jiwer
import openai
from tests.support.server import ServerProcess
from tests.support.speech import HARVARD, speak, wav_samples
from tests.support.whisper_model import fetch_whisper_base

MODEL = "whisper-base"


def _normalized(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower().replace("'", "")))


def clips() -> list[tuple[str, bytes, float]]:
    """(text, WAV bytes, seconds) of each clip."""
    groups = [[s] for s in HARVARD] + [list(HARVARD[:12]), list(HARVARD[12:])]
    made = []
    for group in groups:
        text = " ".join(group)
        data = speak(text)
        samples, rate = wav_samples(data)
        made.append((text, data, len(samples) / rate))
    return made


def score(name: str, transcribe: Any, audio: list[tuple[str, bytes, float]]) -> dict[str, Any]:
    """WER and speed of `transcribe(wav bytes) -> text`, one at a time and four at once."""
    transcribe(audio[0][1])  # warm
    started = time.perf_counter()
    hypotheses = [transcribe(data) for _, data, _ in audio]
    serial = time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(transcribe, [data for _, data, _ in audio]))
    parallel = time.perf_counter() - started
    seconds = sum(s for _, _, s in audio)
    result = {
        "name": name,
        "wer": round(
            jiwer.wer([_normalized(t) for t, _, _ in audio], [_normalized(h) for h in hypotheses]),
            4,
        ),  # fmt: skip
        "audio_s_per_s_1": round(seconds / serial, 2),
        "audio_s_per_s_4": round(seconds / parallel, 2),
    }
    print(json.dumps(result), flush=True)
    return result


def ovrunner_side(
    model_dir: Path, beams: int, audio: list[tuple[str, bytes, float]]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as store:
        subprocess.run([sys.executable, "-m", "ovrunner.cli", "models", "import", str(model_dir),
                        "--name", MODEL, "--store-dir", store], check=True, capture_output=True)  # fmt: skip
        server = ServerProcess(Path(store), "--transcription-beams", str(beams)).wait_ready()
        try:
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", timeout=600)

            def transcribe(data: bytes) -> str:
                return client.audio.transcriptions.create(model=MODEL, file=("a.wav", data),
                                                          language="en").text  # fmt: skip

            return score(f"ovrunner (beams {beams})", transcribe, audio)
        finally:
            server.stop()


def faster_whisper_side(model_dir: Path, compute_type: str, beams: int,
                        audio: list[tuple[str, bytes, float]]) -> dict[str, Any]:  # fmt: skip
    import io

    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=2)

    def transcribe(data: bytes) -> str:
        segments, _ = model.transcribe(io.BytesIO(data), beam_size=beams, language="en",
                                       vad_filter=False)  # fmt: skip
        return "".join(s.text for s in segments)

    return score(f"faster-whisper {compute_type} (beams {beams})", transcribe, audio)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/speech.json"))
    args = parser.parse_args()
    model_dir = fetch_whisper_base()
    audio = clips()
    print(f"{len(audio)} clips, {sum(s for _, _, s in audio):.0f} s of audio", flush=True)
    results = [
        ovrunner_side(model_dir, args.beams, audio),
        faster_whisper_side(model_dir, "int8", args.beams, audio),
        faster_whisper_side(model_dir, "float32", args.beams, audio),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": _cpu(), "results": results}, indent=2))


def _cpu() -> str:
    info = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.MULTILINE)[1].split())  # type: ignore[index]
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags)


if __name__ == "__main__":
    main()
