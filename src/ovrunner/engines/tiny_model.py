"""Build a tiny llama GGUF that OpenVINO GenAI can load, using only `gguf` and `tokenizers`.

The model is random but deterministic (fixed seed), well under 1 MB, and built in well under
a second. Two users: the tests, which need a real pipeline in CI, and the server's schema
check (`grammar`), which compiles client schemas on a pipeline of its own. Weights use a large
init (std 0.3): with a small init greedy decoding collapses onto one token, and the engine
tests need varied output to show that stream deltas join correctly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CONTEXT_LENGTH = 512

_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a small model runner serves local language models on a cpu",
    "continuous batching lets many requests share one step of the pipeline",
    "hello world, what is the capital of france? paris is the capital.",
    "once upon a time there was a tiny model that wrote short stories",
    "0123456789 ,.;:!?'\"()[]{}<>-_=+*/\\ @#$%^&|~`",
]


def _train_tokenizer(vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tokenizer


def _add_tokenizer(writer: gguf.GGUFWriter, tokenizer: Tokenizer, chat_template: str) -> int:
    vocab = tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    token_types = [
        gguf.TokenType.CONTROL if token in SPECIAL_TOKENS else gguf.TokenType.NORMAL
        for token in tokens
    ]
    merges = (
        [" ".join(pair) for pair in tokenizer.model.get_merges()]
        if hasattr(tokenizer.model, "get_merges")
        else _merges_from_json(tokenizer)
    )
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template)
    return len(tokens)


def _merges_from_json(tokenizer: Tokenizer) -> list[str]:
    import json

    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [" ".join(m) if isinstance(m, list) else m for m in merges]


@dataclass(frozen=True)
class _Shape:
    n_vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int


def _add_weights(writer: gguf.GGUFWriter, shape: _Shape, rng: np.random.Generator,
                 std: float) -> None:  # fmt: skip
    """A llama's tensors, drawn from `rng` in a fixed order (the same seed, the same model)."""
    hidden, kv_dim = shape.hidden, shape.hidden // shape.heads * shape.kv_heads

    def matrix(rows: int, cols: int) -> np.ndarray:
        # The GGUF reader refuses F32 weight matrices; F16 is the smallest accepted float.
        return (rng.standard_normal((rows, cols)) * std).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(hidden, dtype=np.float32)

    writer.add_tensor("token_embd.weight", matrix(shape.n_vocab, hidden))
    for i in range(shape.layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.attn_q.weight", matrix(hidden, hidden))
        writer.add_tensor(f"blk.{i}.attn_k.weight", matrix(kv_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_v.weight", matrix(kv_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_output.weight", matrix(hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(shape.ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", matrix(shape.ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", matrix(hidden, shape.ffn))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", matrix(shape.n_vocab, hidden))


def build_tiny_gguf(
    path: Path,
    *,
    vocab_size: int = 384,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    ffn: int = 128,
    seed: int = 1234,
    std: float = 0.3,
    chat_template: str = CHAT_TEMPLATE,
    context_length: int = CONTEXT_LENGTH,
) -> Path:
    """Write a tiny llama GGUF to `path` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Its writer logs each file at INFO; a server's log holds only its own lines.
    logging.getLogger("gguf.gguf_writer").setLevel(logging.WARNING)
    tokenizer = _train_tokenizer(vocab_size)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("ovrunner-tiny-llama")
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    n_vocab = _add_tokenizer(writer, tokenizer, chat_template)
    writer.add_vocab_size(n_vocab)

    shape = _Shape(n_vocab, hidden, layers, heads, kv_heads, ffn)
    _add_weights(writer, shape, np.random.default_rng(seed), std)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
