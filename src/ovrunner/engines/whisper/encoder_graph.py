"""Whisper's audio encoder as an OpenVINO model: log-mel features in, hidden states out.

Two convolutions (the second halves the frames: 3,000 -> 1,500 for 30 s), the fixed sinusoidal
positions, pre-norm transformer blocks, a final norm. Names as WhisperPipeline reads them:
input `input_features` [batch, mel bins, frames], output `last_hidden_state`.
"""

from __future__ import annotations

import numpy as np
import openvino.opset15 as ops
from openvino import Model, PartialShape, Type

from ovrunner.engines.whisper.ctranslate2_files import CTranslate2Whisper
from ovrunner.engines.whisper.layers import (
    Node,
    feed_forward,
    gelu,
    i64,
    layer_norm,
    linear,
    merge_heads,
    split_heads,
    weight,
)


def build_encoder(model: CTranslate2Whisper) -> Model:
    w, dims = model.weights, model.dims
    features = ops.parameter(PartialShape([-1, dims.mel_bins, 2 * dims.audio_positions]),
                             Type.f32, name="input_features")  # fmt: skip
    features.output(0).set_names({"input_features"})
    x = _conv(features, w["encoder/conv1/weight"], w["encoder/conv1/bias"], stride=1, name="conv1")
    x = _conv(gelu(x), w["encoder/conv2/weight"], w["encoder/conv2/bias"], stride=2, name="conv2")
    x = ops.transpose(gelu(x), i64(0, 2, 1))  # [batch, frames, width]
    x = ops.add(x, weight(w["encoder/position_encodings/encodings"], "encoder.positions"))
    for i in range(dims.encoder_layers):
        x = _block(x, w, f"encoder/layer_{i}", dims.heads)
    x = layer_norm(x, w["encoder/layer_norm/gamma"], w["encoder/layer_norm/beta"], "encoder.norm")
    result = ops.result(x)
    result.output(0).set_names({"last_hidden_state"})
    return Model([result], [features], "whisper_encoder")


def _conv(x: Node, w: np.ndarray, b: np.ndarray, *, stride: int, name: str) -> Node:
    y = ops.convolution(x, weight(w, f"encoder.{name}.weight"), strides=[stride],
                        pads_begin=[1], pads_end=[1], dilations=[1])  # fmt: skip
    return ops.add(y, ops.reshape(weight(b, f"encoder.{name}.bias"), i64(1, -1, 1), False))


def _block(x: Node, w: dict[str, np.ndarray], prefix: str, heads: int) -> Node:
    h = layer_norm(x, w[f"{prefix}/self_attention/layer_norm/gamma"],
                   w[f"{prefix}/self_attention/layer_norm/beta"], f"{prefix}.attn_norm")  # fmt: skip
    qkv = linear(h, w[f"{prefix}/self_attention/linear_0/weight"],
                 w[f"{prefix}/self_attention/linear_0/bias"], f"{prefix}.qkv")  # fmt: skip
    q, k, v = (split_heads(part, heads) for part in ops.split(qkv, np.int64(-1), 3).outputs())
    attended = merge_heads(ops.scaled_dot_product_attention(q, k, v, causal=False))
    out = linear(attended, w[f"{prefix}/self_attention/linear_1/weight"],
                 w[f"{prefix}/self_attention/linear_1/bias"], f"{prefix}.attn_out")  # fmt: skip
    return feed_forward(ops.add(x, out), w, prefix)
