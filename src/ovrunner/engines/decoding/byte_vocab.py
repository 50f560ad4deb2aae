"""Decoding with a byte table, for byte-level BPE vocabularies (GPT-2 style).

Streaming decodes two windows per stream per step (see `detokenize`). The OpenVINO
tokenizer's `decode` costs ~0.09 ms of CPU a call; at one stream that was half of the event
loop's work per token, all of it taken from the cores the pipeline steps on. In a byte-level
BPE vocabulary (SmolLM2, Llama 3, Qwen, GPT-2) every token stands for a fixed byte string,
so joining table entries decodes a window in ~2 µs.

The table is built from the GGUF's own token list, and used only if it decodes every single
token and a probe text exactly as the tokenizer does; otherwise (another tokenizer model, a
decoder that cleans up spaces) the tokenizer keeps decoding. A batch holding an id outside
the table goes to the tokenizer too.

Bytes that are not valid UTF-8 (a character split across steps, or a model's garbage) are
dropped, as the OpenVINO detokenizer drops them. It lets encoded surrogates and code points
above U+10FFFF through, though, and its binding then turns them into U+FFFD; a window holding
such bytes is rare enough to be left to the tokenizer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path

from ovrunner.engines.decoding.detokenize import DecodeMany
from ovrunner.engines.model_files import TOKEN_TYPES, TOKENS, read_gguf_metadata

log = logging.getLogger(__name__)

# Text whose decoding must match the tokenizer's exactly: accents, CJK, emoji, whitespace
# runs, contractions and punctuation after spaces (what a clean-up step would change).
PROBE_TEXT = (
    "Héllo, wörld! It's 3.14 - don't , . ? 's  two  spaces\tand\ttabs\n\nnew lines "
    "日本語のテキスト 🙂🚀 ¿Qué tal? Ünïcödé ‘quotes’ — «guillemets» 12345678 x=y+1;"
)


# Byte sequences the OpenVINO detokenizer passes on but Python's UTF-8 codec rejects.
_PASSED_ON_BY_THE_DETOKENIZER = re.compile(rb"\xed[\xa0-\xbf]|\xf4[\x90-\xbf]|[\xf5-\xf7]")


class TokenType(IntEnum):
    """GGUF `tokenizer.ggml.token_type` values."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the other bytes for
    the code points from U+0100 upwards, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    mapping = {chr(b): b for b in printable}
    others = (b for b in range(256) if b not in mapping.values())
    mapping.update({chr(256 + i): b for i, b in enumerate(others)})
    return mapping


class ByteVocab:
    """Token id -> bytes; special (control) tokens decode to nothing, as with
    `skip_special_tokens=True`."""

    def __init__(self, table: list[bytes], fallback: DecodeMany) -> None:
        self._table = table
        self._fallback = fallback

    def __len__(self) -> int:
        return len(self._table)

    @classmethod
    def from_tokens(
        cls, tokens: Sequence[str], token_types: Sequence[int], fallback: DecodeMany
    ) -> ByteVocab | None:
        """The table of a byte-level vocabulary; None when a token is not byte-level text."""
        alphabet = _unicode_to_byte()
        table: list[bytes] = []
        for token, token_type in zip(tokens, token_types, strict=True):
            if token_type == TokenType.CONTROL:
                table.append(b"")
            elif token_type == TokenType.USER_DEFINED:  # added tokens are stored as text
                table.append(token.encode())
            elif token_type == TokenType.BYTE and token.startswith("<0x"):
                table.append(bytes([int(token[3:-1], 16)]))
            else:
                try:
                    table.append(bytes(alphabet[char] for char in token))
                except KeyError:
                    return None
        return cls(table, fallback)

    def decode_many(self, windows: list[list[int]]) -> list[str]:
        table = self._table
        texts: list[str | None] = []
        try:
            for window in windows:
                texts.append(_text(b"".join([table[i] for i in window])))
        except IndexError:  # an id the vocabulary lacks (a padded embedding)
            return self._fallback(windows)
        left = [i for i, text in enumerate(texts) if text is None]
        if left:
            for i, text in zip(left, self._fallback([windows[i] for i in left])):
                texts[i] = text
        return texts  # type: ignore[return-value]

    def mismatches(self, probe_ids: list[int]) -> list[int]:
        """Token ids (and -1 for the probe text) that this table decodes differently from
        the tokenizer."""
        # Separate calls: the tokenizer pads a batch to its longest window and keeps the
        # buffer, so the probe in the batch of single tokens held 128 MiB (SmolLM2).
        singles = [[i] for i in range(len(self._table))]
        wrong = [i for i, (a, b) in enumerate(zip(self.decode_many(singles),
                                                  self._fallback(singles))) if a != b]  # fmt: skip
        if self.decode_many([probe_ids]) != self._fallback([probe_ids]):
            wrong.append(-1)
        return wrong


def _text(data: bytes) -> str | None:
    """`data` as the detokenizer would decode it; None where only the detokenizer knows."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if _PASSED_ON_BY_THE_DETOKENIZER.search(data):
            return None
        return data.decode("utf-8", "ignore")


def fast_decoder(
    gguf_path: Path, reference: DecodeMany, encode: Callable[[str], list[int]]
) -> DecodeMany:
    """The byte table's `decode_many` when it agrees with `reference`, else `reference`."""
    try:
        metadata = read_gguf_metadata(gguf_path, arrays=(TOKENS, TOKEN_TYPES))
        tokens, token_types = metadata[TOKENS], metadata[TOKEN_TYPES]
    except (OSError, KeyError, ValueError) as exc:
        log.info("decoding with the tokenizer: no vocabulary in %s (%s)", gguf_path.name, exc)
        return reference
    vocab = None
    if metadata.get("tokenizer.ggml.model") == "gpt2" and tokens and token_types:
        vocab = ByteVocab.from_tokens(tokens, token_types, reference)  # type: ignore[arg-type]
    if vocab is None:
        log.info("decoding with the tokenizer: %s is not a byte-level vocabulary", gguf_path.name)
        return reference
    wrong = vocab.mismatches(encode(PROBE_TEXT))
    if wrong:
        log.warning("decoding with the tokenizer: the byte table of %s differs on %d token(s)",
                    gguf_path.name, len(wrong))  # fmt: skip
        return reference
    return vocab.decode_many
