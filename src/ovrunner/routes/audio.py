"""OpenAI's speech-to-text routes: `/v1/audio/transcriptions` and `/v1/audio/translations`
(into English), each also under `/engines/{engine}`; wire shapes in `protocol/audio.py`.

The order of the work: the form's fields are checked and the model's mode resolved (a 400 or
404 before the audio is even decoded), the audio is decoded in a worker thread (bounded in
bytes by the body limit and in seconds by `audio_max_seconds`), then the model's runner is
leased. A client that hangs up cancels its transcription, waiting or running.

At temperature 0 the answer is a beam search (`transcription_beams`, 5 by default, as
faster-whisper and Whisper's own command decode): on espeak-ng's Harvard sentences it made 16.5%
word errors against greedy decoding's 20.8%, for 1.4x the time. A stream decodes greedily:
a beam's text is final only at the end of its window, so beams would stream nothing early.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ovrunner.audio_input import decode_audio
from ovrunner.engines.base import Mode, Transcript, TranscriptDelta, TranscriptionRequest
from ovrunner.errors import (
    ClientDisconnectedError,
    Dialect,
    InvalidRequestError,
    UnsupportedMediaTypeError,
    UnsupportedParameterError,
)
from ovrunner.lifecycle import Lifecycle
from ovrunner.metrics import Metrics
from ovrunner.protocol.audio import (
    LANGUAGES,
    AudioForm,
    TextDelta,
    TextDone,
    TranscriptionJson,
    subtitles,
    usage,
    verbose_json,
)
from ovrunner.routes.body import validation_error
from ovrunner.routes.serving import require_mode, unless_disconnected
from ovrunner.settings import Settings
from ovrunner.streaming import sse_response

TRANSLATION_FIELDS = ("model", "prompt", "response_format", "temperature")
TRANSCRIPTION_FIELDS = (*TRANSLATION_FIELDS, "language", "timestamp_granularities", "stream",
                        "chunking_strategy")  # fmt: skip
# OpenAI's fields that would change the answer and that Whisper here cannot honour.
REFUSED = {
    "include": "token log-probabilities are not reported by this server's Whisper pipeline",
    "known_speaker_names": "speaker diarization is not supported",
    "known_speaker_references": "speaker diarization is not supported",
    "languages": "send one 'language', or none to detect it",
    "keywords": "keyword boosting is not supported; put the words in 'prompt'",
}


async def transcriptions(request: Request) -> Response:
    return await _answer(request, "transcribe", TRANSCRIPTION_FIELDS)


async def translations(request: Request) -> Response:
    return await _answer(request, "translate", TRANSLATION_FIELDS)


async def _answer(request: Request, task: str, allowed: tuple[str, ...]) -> Response:
    settings: Settings = request.app.state.settings
    lifecycle: Lifecycle = request.app.state.lifecycle
    body, data = await _read_form(request, allowed)
    if body.language is not None and body.language not in LANGUAGES:
        raise UnsupportedParameterError(
            f"{body.language!r} is not a language Whisper knows (ISO 639-1 codes such as 'en', "
            "'de', 'ja'; omit it to detect the language)",
            param="language",
        )
    pinned = request.path_params.get("engine")
    model, _ = lifecycle.resolve(body.model, engine=pinned)
    require_mode(model, Mode.TRANSCRIPTION)
    samples = await unless_disconnected(request, asyncio.to_thread(
        decode_audio, data, max_seconds=settings.audio_max_seconds))  # fmt: skip
    del data
    granularities = set(body.timestamp_granularities) or {"segment"}
    verbose = body.response_format == "verbose_json"
    work = TranscriptionRequest(
        samples=samples, task=task, language=body.language, prompt=body.prompt,
        temperature=body.temperature, beams=1 if body.stream else settings.transcription_beams,
        word_timestamps=verbose and "word" in granularities,
        segment_timestamps=body.response_format in ("srt", "vtt", "verbose_json"),
        stream=body.stream,
    )  # fmt: skip
    lease = await lifecycle.acquire(body.model, engine=pinned)
    owned = True  # until a stream takes the lease over
    try:
        events = _metered(lease.runner.transcribe(work), request.app.state.metrics, body.model)
        if body.stream:
            first = await unless_disconnected(request, anext(events))

            async def close() -> None:
                await events.aclose()
                lease.release()

            owned = False
            return sse_response(_stream(first, events), on_close=close, dialect=Dialect.RESPONSES)
        transcript = await unless_disconnected(request, _last(events))
    finally:
        if owned:
            lease.release()
    if body.response_format in ("text", "srt", "vtt"):
        text = transcript.text.strip() + "\n" if body.response_format == "text" else subtitles(
            transcript, body.response_format)  # fmt: skip
        media = "text/vtt" if body.response_format == "vtt" else "text/plain"
        return PlainTextResponse(text, media_type=f"{media}; charset=utf-8")
    answer: BaseModel
    if verbose:
        answer = verbose_json(transcript, task=task, temperature=body.temperature,
                              segments="segment" in granularities,
                              words="word" in granularities)  # fmt: skip
    else:
        answer = TranscriptionJson(text=transcript.text.strip(), usage=usage(transcript))
    return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")


async def _metered(events: AsyncGenerator[TranscriptDelta | Transcript, None], metrics: Metrics,
                   model: str) -> AsyncGenerator[TranscriptDelta | Transcript, None]:  # fmt: skip
    """The events, counting the transcript's audio and its real-time factor as it completes."""
    started = time.perf_counter()
    async with contextlib.aclosing(events):
        async for item in events:
            if isinstance(item, Transcript):
                metrics.observe_transcribed(model, item.duration, time.perf_counter() - started)
            yield item


async def _last(events: AsyncIterator[TranscriptDelta | Transcript]) -> Transcript:
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for item in events:
            if isinstance(item, Transcript):
                return item
    raise AssertionError("a transcription ended without its transcript")


async def _stream(first: TranscriptDelta | Transcript,
                  events: AsyncIterator[TranscriptDelta | Transcript]) -> AsyncIterator[BaseModel]:  # fmt: skip
    item: TranscriptDelta | Transcript | None = first
    while item is not None:
        if isinstance(item, Transcript):
            yield TextDone(text=item.text.strip(), usage=usage(item))
            return
        yield TextDelta(delta=item.text)
        item = await anext(events, None)


async def _read_form(request: Request, allowed: tuple[str, ...]) -> tuple[AudioForm, bytes]:
    """The form's fields, checked, and the audio file's bytes; a 400 naming what is wrong."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            "the request body must be sent as Content-Type: multipart/form-data (a 'file' "
            f"part and the other fields), not {media_type[:80] or 'none'!r}"
        )
    try:
        form = await request.form(max_files=1, max_fields=64)
    except ClientDisconnect:
        raise ClientDisconnectedError("the client closed the connection mid-body") from None
    except MultiPartException as exc:
        raise InvalidRequestError(f"the multipart body cannot be read: {exc.message}") from None
    try:
        fields = _fields(form, allowed)
        try:
            body = AudioForm.model_validate(fields)
        except ValidationError as exc:
            raise validation_error(exc) from None
        if body.timestamp_granularities and body.response_format != "verbose_json":
            raise InvalidRequestError(
                "timestamp_granularities[] needs response_format 'verbose_json'",
                param="timestamp_granularities[]",
            )
        if body.stream and body.response_format not in ("json", "text"):
            raise UnsupportedParameterError(
                f"a streamed transcription is text as it is decoded; response_format "
                f"{body.response_format!r} cannot stream (use 'json' or 'text', or stream false)",
                param="stream",
            )
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError("missing required parameter 'file' (the audio, as a file part)",
                                      param="file")  # fmt: skip
        data = await upload.read()
    finally:
        await form.close()
    return body, data


def _fields(form: FormData, allowed: tuple[str, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in form.keys():  # noqa: SIM118 - a multi-dict: keys() once each
        if key == "file":
            continue
        name = key.removesuffix("[]")
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if name in REFUSED:
            raise UnsupportedParameterError(f"{key} is not supported: {REFUSED[name]}", param=key)
        if name not in allowed:
            raise UnsupportedParameterError(f"unknown parameter {key!r} for this route", param=key)
        if name == "timestamp_granularities":
            fields[name] = [*fields.get(name, []), *values]
        elif values:
            fields[name] = values[-1]
    return fields


def routes() -> list[BaseRoute]:
    table = [("/v1/audio/transcriptions", transcriptions), ("/v1/audio/translations", translations)]
    return [
        Route(prefix + path, endpoint, methods=["POST"])
        for prefix in ("", "/engines/{engine}")
        for path, endpoint in table
    ]
