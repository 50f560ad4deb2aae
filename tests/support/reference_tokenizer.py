"""A GGUF's own tokenizer rebuilt with Hugging Face `tokenizers`, from the vocabulary, merges
and pre-tokenizer the file names (read with the `gguf` package), to count tokens without
OpenVINO: the reference a served model's `prompt_tokens` is checked against.

Only byte-level BPE vocabularies (`tokenizer.ggml.model` "gpt2": Llama 3, Qwen, SmolLM) with a
pre-tokenizer named below are rebuilt; anything else is a `ValueError`.
"""

from __future__ import annotations

from pathlib import Path

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

# llama.cpp's pre-tokenizer regexes (`llama-vocab.cpp`), by the name a GGUF gives.
PRE_TOKENIZERS = {
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
    "llama-bpe": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}
CONTROL = 3  # llama.cpp's token type of special tokens such as <|im_start|>


def from_gguf(path: Path) -> Tokenizer:
    fields = gguf.GGUFReader(path).fields

    def value(key: str) -> object:
        return fields[key].contents()

    if value("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{path.name}: not a byte-level BPE vocabulary")
    pre = str(value("tokenizer.ggml.pre"))
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{path.name}: no reference for the pre-tokenizer {pre!r}")
    tokens = [str(t) for t in value("tokenizer.ggml.tokens")]  # type: ignore[attr-defined]
    types = list(value("tokenizer.ggml.token_type"))  # type: ignore[call-overload]
    merges = [tuple(str(m).split(" ", 1)) for m in value("tokenizer.ggml.merges")]  # type: ignore[attr-defined]
    tokenizer = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))  # type: ignore[arg-type]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRE_TOKENIZERS[pre]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True) for t, kind in zip(tokens, types) if kind == CONTROL]
    )
    return tokenizer


def count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)
