"""A tiny cross-encoder as an OpenVINO IR directory, built here with random weights, so the
real `TextRerankPipeline` path runs in CI with no download.

The graph: token embeddings, mean-pooled over the attention mask, projected to one logit
(`logits`, which the pipeline requires). `expected_score` computes the same in numpy, so a
test can check the scores the server returns, not only their order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ovrunner.engines.model_files import IR_XML
from ovrunner.engines.openvino.convert import save_tokenizer

WORDS = (
    "the a what is of capital city france paris germany berlin river bank money cat dog sat "
    "on mat weather today rain sun"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WINDOW = 32
WIDTH = 8


@dataclass(frozen=True)
class TinyCrossEncoder:
    path: Path
    embeddings: np.ndarray
    projection: np.ndarray

    def expected_score(self, query: str, document: str) -> float:
        """The pipeline's relevance score: the sigmoid of the model's logit."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        ids = tokenizer.encode(query, document).ids
        logit = float(self.embeddings[ids].mean(axis=0) @ self.projection)
        return 1.0 / (1.0 + np.exp(-logit))


def build_tiny_cross_encoder(target: Path, seed: int = 0) -> TinyCrossEncoder:
    import openvino
    import openvino.opset13 as ops
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    target.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate([*SPECIAL, *WORDS])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.save(str(target / "tokenizer.json"))
    special = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
               "sep_token": "[SEP]", "mask_token": "[MASK]"}  # fmt: skip
    (target / "tokenizer_config.json").write_text(json.dumps(special))
    (target / "config.json").write_text(json.dumps({
        "architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "max_position_embeddings": WINDOW, "num_labels": 1,
    }))  # fmt: skip

    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((len(vocab), WIDTH)).astype(np.float32)
    projection = rng.standard_normal(WIDTH).astype(np.float32)
    inputs = [ops.parameter([-1, -1], openvino.Type.i64, name=name)
              for name in ("input_ids", "attention_mask", "token_type_ids")]  # fmt: skip
    ids, mask, _ = inputs
    tokens = ops.gather(ops.constant(embeddings), ids, ops.constant(0))
    weights = ops.unsqueeze(ops.convert(mask, openvino.Type.f32), ops.constant(-1))
    pooled = ops.divide(
        ops.reduce_sum(ops.multiply(tokens, weights), ops.constant(1), False),
        ops.reduce_sum(weights, ops.constant(1), False),
    )
    logits = ops.matmul(pooled, ops.constant(projection.reshape(WIDTH, 1)), False, False)
    logits.output(0).get_tensor().set_names({"logits"})
    model = openvino.Model([logits], inputs, "tiny-cross-encoder")
    openvino.save_model(model, str(target / IR_XML), compress_to_fp16=False)
    save_tokenizer(target, target, pair_inputs=True)
    return TinyCrossEncoder(target, embeddings, projection)
