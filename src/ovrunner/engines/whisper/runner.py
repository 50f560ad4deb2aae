"""A Whisper model on the `openvino` engine: speech to text in an engine process of its own.

One transcription at a time (a CPU's cores are all busy with one); the others wait their
turn (the lifecycle bounds a runner's leases at `max_queue`: a 429 beyond). Text streams as
it is decoded; a caller that goes away cancels its transcription, waiting or running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from ovrunner.engines.base import (
    LoadConfig,
    Mode,
    ModelRef,
    Runner,
    Transcript,
    TranscriptDelta,
    TranscriptionRequest,
    TranscriptSegment,
    TranscriptWord,
)
from ovrunner.engines.openvino.encoder_process import EncoderProcess, EncoderSpec
from ovrunner.engines.stats import RunnerStats
from ovrunner.engines.whisper.files import text_window
from ovrunner.errors import EngineError, UnsupportedParameterError

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class WhisperStats(RunnerStats):
    transcriptions: int
    audio_seconds: float  # transcribed so far
    engine_pid: int | None = None
    restarts: int = 0


class WhisperRunner(Runner):
    engine_name = "openvino"
    mode = Mode.TRANSCRIPTION

    def __init__(self, model: ModelRef, device: str, process: EncoderProcess) -> None:
        self.model_id = model.id
        self.device = device
        self.context_window = text_window(model.path)
        self._process = process
        self._lock = asyncio.Lock()
        self._running = 0
        self._waiting = 0
        self._count = 0
        self._seconds = 0.0
        self._closed = False
        info = process.call("info")
        self.word_timestamps: bool = info["word_timestamps"]
        self.languages: list[str] = info["languages"]

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptDelta | Transcript, None]:
        self._check(request)
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str] = asyncio.Queue()
        token = object()

        def on_event(text: str) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, text)

        self._waiting += 1
        admitted = False
        try:
            async with self._lock:
                self._waiting -= 1
                admitted = True
                if self._closed:
                    raise EngineError(f"the runner of {self.model_id!r} was unloaded")
                self._running += 1
                call = asyncio.ensure_future(asyncio.to_thread(
                    self._process.call, "transcribe", request, on_event=on_event, token=token))  # fmt: skip
                try:
                    while not call.done():
                        getter = asyncio.ensure_future(deltas.get())
                        await asyncio.wait({call, getter}, return_when=asyncio.FIRST_COMPLETED)
                        if getter.done():
                            yield TranscriptDelta(getter.result())
                        else:
                            getter.cancel()
                    while not deltas.empty():
                        yield TranscriptDelta(deltas.get_nowait())
                    result = call.result()
                finally:
                    self._running -= 1
                    if not call.done():  # the caller left: stop the decoding, keep the turn
                        self._process.cancel(token)
                        await asyncio.shield(_settled(call))
        finally:
            if not admitted:
                self._waiting -= 1
        duration = len(request.samples) / SAMPLE_RATE
        self._count += 1
        self._seconds += duration
        yield Transcript(
            text=result["text"],
            language=result["language"],
            duration=duration,
            segments=tuple(
                TranscriptSegment(float(s), float(e), t) for s, e, t in result["segments"]
            ),
            words=tuple(TranscriptWord(w, float(s), float(e)) for w, s, e in result["words"]),
        )

    def _check(self, request: TranscriptionRequest) -> None:
        if request.word_timestamps and not self.word_timestamps:
            raise UnsupportedParameterError(
                f"the model {self.model_id!r} names no alignment heads in its "
                "generation_config.json, so it cannot time words; ask for segments",
                param="timestamp_granularities[]",
            )
        if (
            request.language is not None
            and self.languages
            and request.language not in self.languages
        ):
            raise UnsupportedParameterError(
                f"the model {self.model_id!r} does not know the language {request.language!r}",
                param="language",
            )

    @property
    def failure(self) -> Exception | None:
        return self._process.failure

    def stats(self) -> WhisperStats:
        return WhisperStats(admitted=self._running + self._waiting, running=self._running,
                            waiting=self._waiting, transcriptions=self._count,
                            audio_seconds=round(self._seconds, 1), engine_pid=self._process.pid,
                            restarts=self._process.restarts)  # fmt: skip

    def close(self) -> None:
        self._closed = True
        self._process.close()


async def _settled(call: asyncio.Future[Any]) -> None:
    try:
        await call
    except Exception:  # noqa: BLE001 - a cancelled call's end is of no interest
        pass


def load_whisper(model: ModelRef, config: LoadConfig, properties: dict[str, Any]) -> Runner:
    """Open the WhisperPipeline of `model` (an IR directory) in its process."""
    spec = EncoderSpec(model, config.device, properties, top_n=0)
    process = EncoderProcess(spec, crash_limit=config.crash_limit,
                             crash_window_s=config.crash_window_s)  # fmt: skip
    try:
        return WhisperRunner(model, config.device, process)
    except BaseException:
        process.close()
        raise
