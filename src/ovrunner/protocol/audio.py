"""OpenAI's audio routes on the wire: `/v1/audio/transcriptions` and `/v1/audio/translations`.

Their bodies are multipart forms, as OpenAI's SDK sends them: lists as repeated `name[]`
parts, booleans as "true"/"false". The answers: `json` ({text, usage}), `text`, `srt`, `vtt`
(plain text), `verbose_json` (language by its English name, as OpenAI spells it, segments and
words with their times), and for `stream` server-sent `transcript.text.delta` and
`transcript.text.done` events.
"""

from __future__ import annotations

import math
import zlib
from typing import Literal

from pydantic import BaseModel, Field

from ovrunner.engines.base import Transcript

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")

# Whisper's languages by code, named as OpenAI's `verbose_json` names them (in the order of
# Whisper's language tokens).
LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int  # of audio, rounded up, as OpenAI bills it


class TranscriptionJson(BaseModel):
    text: str
    usage: DurationUsage


class VerboseSegment(BaseModel):
    """A segment as OpenAI's `verbose_json` has it, with the fields this server can measure:
    WhisperPipeline reports no token ids, log-probabilities or no-speech probabilities per
    segment, so `tokens`, `avg_logprob` and `no_speech_prob` are left out, not made up."""

    id: int
    seek: int  # the segment's start in 10 ms frames (Whisper's unit)
    start: float
    end: float
    text: str
    temperature: float
    compression_ratio: float  # text bytes over their zlib size, as Whisper measures repetition


class VerboseWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionVerboseJson(BaseModel):
    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[VerboseSegment] | None = None
    words: list[VerboseWord] | None = None
    usage: DurationUsage


class TextDelta(BaseModel):
    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TextDone(BaseModel):
    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: DurationUsage


def usage(transcript: Transcript) -> DurationUsage:
    return DurationUsage(seconds=math.ceil(transcript.duration))


def verbose_json(transcript: Transcript, *, task: str, temperature: float, segments: bool,
                 words: bool) -> TranscriptionVerboseJson:  # fmt: skip
    code = transcript.language or ""
    return TranscriptionVerboseJson(
        task=task,
        language=LANGUAGES.get(code, code),
        duration=round(transcript.duration, 3),
        text=transcript.text.strip(),
        segments=[
            VerboseSegment(
                id=i,
                seek=int(s.start * 100),
                start=round(s.start, 2),
                end=round(s.end, 2),
                text=s.text,
                temperature=temperature,
                compression_ratio=compression_ratio(s.text),
            )  # fmt: skip
            for i, s in enumerate(transcript.segments)
        ]
        if segments
        else None,
        words=[
            VerboseWord(word=w.word.strip(), start=round(w.start, 2), end=round(w.end, 2))
            for w in transcript.words
        ]  # fmt: skip
        if words
        else None,
        usage=usage(transcript),
    )


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def subtitles(transcript: Transcript, kind: Literal["srt", "vtt"]) -> str:
    """SubRip (numbered cues, `00:00:01,000`) or WebVTT (a header, `00:00:01.000`)."""
    separator = "," if kind == "srt" else "."
    cues = []
    for i, segment in enumerate(transcript.segments, start=1):
        times = f"{_clock(segment.start, separator)} --> {_clock(segment.end, separator)}"
        cue = (
            f"{i}\n{times}\n{segment.text.strip()}"
            if kind == "srt"
            else f"{times}\n{segment.text.strip()}"
        )
        cues.append(cue)
    body = "\n\n".join(cues) + "\n"
    return body if kind == "srt" else "WEBVTT\n\n" + body


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


class AudioForm(BaseModel):
    """The form's fields other than the file, checked."""

    model: str = Field(min_length=1)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0, le=1)
    timestamp_granularities: list[Literal["segment", "word"]] = []
    stream: bool = False
    chunking_strategy: Literal["auto"] | None = None


class TranscriptionUpload(AudioForm):
    """The whole multipart form, for the OpenAPI document (the routes read the file apart)."""

    file: bytes


class TranslationUpload(BaseModel):
    file: bytes
    model: str
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0, le=1)
