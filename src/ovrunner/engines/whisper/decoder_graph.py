"""Whisper's text decoder as the stateful OpenVINO model WhisperPipeline steps.

The contract (OpenVINO GenAI 2026.4, `src/cpp/src/whisper/models/statefull_decoder.cpp`; the
two-file "with past" layout is gone since 2026.0): inputs `input_ids` [beams, tokens] i64,
`encoder_hidden_states` [beams, frames, width] and `beam_idx` [beams] i32; output 0 `logits`.
The caches are state, reset by the pipeline at each 30 s window:
- self-attention keys and values: a ReadValue starting empty, reordered by `beam_idx`,
  extended by the new tokens' and assigned back;
- cross-attention keys and values: a ReadValue whose *initializer* projects the encoder's
  states, so the CPU plugin computes them only on the first step after a reset.
The self-attention mask is explicit (OpenVINO's `causal` flag aligns to the top left, which
would hide the past from a single new token). Cross-attention keeps a zero mask and a name
holding `encoder_attn`: with word timestamps on, GenAI splits exactly those attentions into
their scores, one per layer in order, to align words with audio frames.
"""

from __future__ import annotations

import numpy as np
import openvino.opset15 as ops
from openvino import Model, PartialShape, Type
from openvino import op as ov_op
from openvino.op.util import Variable, VariableInfo

from ovrunner.engines.whisper.ctranslate2_files import CTranslate2Whisper
from ovrunner.engines.whisper.layers import (
    Node,
    feed_forward,
    i64,
    layer_norm,
    linear,
    merge_heads,
    split_heads,
    weight,
)

_MASKED = float(np.finfo(np.float32).min)


def build_decoder(model: CTranslate2Whisper) -> Model:
    w, dims = model.weights, model.dims
    head_width = dims.width // dims.heads
    scale = ops.constant(np.float32(head_width**-0.5))
    cache_shape = [-1, dims.heads, -1, head_width]

    input_ids = _parameter("input_ids", [-1, -1], Type.i64)
    encoder_states = _parameter("encoder_hidden_states", [-1, -1, dims.width], Type.f32)
    beam_idx = _parameter("beam_idx", [-1], Type.i32)

    batch = ops.gather(ops.shape_of(input_ids), i64(0), np.int64(0))  # [1]
    new_tokens = _dim(input_ids, 1)
    empty_cache = ops.broadcast(ops.constant(np.float32(0)),
                                ops.concat([batch, i64(dims.heads, 0, head_width)], 0))  # fmt: skip
    sinks: list[Node] = []
    # Each layer's self-attention caches as the step starts, reordered for the beams.
    pasts = {}
    for i in range(dims.decoder_layers):
        for part in ("key", "value"):
            variable = _variable(f"decoder.{i}.self.{part}", cache_shape)
            read = ov_op.read_value(empty_cache, variable)
            pasts[i, part] = (variable, ops.gather(read, beam_idx, np.int64(0)))

    def extend(layer: int, part: str, new: Node) -> Node:
        """The cache with `new` appended, assigned back."""
        variable, past = pasts[layer, part]
        joined = ops.concat([past, new], 2)
        sinks.append(ov_op.assign(joined, variable))
        return joined

    def cached(name: str, projected: Node) -> Node:
        """`projected`, computed on the first step after a reset and kept until the next."""
        variable = _variable(name, cache_shape)
        value = ov_op.read_value(projected, variable)
        sinks.append(ov_op.assign(value, variable))
        return value

    # Positions continue from the cache.
    past_length = _dim(pasts[0, "key"][1], 2)
    total = ops.add(past_length, new_tokens)
    positions = ops.range(past_length, total, ops.constant(np.int64(1)), output_type=Type.i64)
    embedding = weight(w["decoder/embeddings/weight"], "decoder.embed_tokens")
    table = weight(w["decoder/position_encodings/encodings"], "decoder.embed_positions")
    x = ops.add(ops.gather(embedding, input_ids, np.int64(0)),
                ops.gather(table, positions, np.int64(0)))  # fmt: skip
    mask = _causal_mask(past_length, new_tokens, total)
    zero_mask = ops.constant(np.float32(0))
    for i in range(dims.decoder_layers):
        prefix = f"decoder/layer_{i}"
        h = layer_norm(x, w[f"{prefix}/self_attention/layer_norm/gamma"],
                       w[f"{prefix}/self_attention/layer_norm/beta"], f"{prefix}.attn_norm")  # fmt: skip
        qkv = linear(h, w[f"{prefix}/self_attention/linear_0/weight"],
                     w[f"{prefix}/self_attention/linear_0/bias"], f"{prefix}.qkv")  # fmt: skip
        q, k, v = (split_heads(part, dims.heads)
                   for part in ops.split(qkv, np.int64(-1), 3).outputs())  # fmt: skip
        keys, values = extend(i, "key", k), extend(i, "value", v)
        attended = ops.scaled_dot_product_attention(
            q, keys, values, mask, scale, causal=False, name=f"decoder.layers.{i}.self_attn.sdpa"
        )
        x = ops.add(
            x,
            linear(
                merge_heads(attended),
                w[f"{prefix}/self_attention/linear_1/weight"],
                w[f"{prefix}/self_attention/linear_1/bias"],
                f"{prefix}.attn_out",
            ),
        )

        h = layer_norm(x, w[f"{prefix}/attention/layer_norm/gamma"],
                       w[f"{prefix}/attention/layer_norm/beta"], f"{prefix}.cross_norm")  # fmt: skip
        q = split_heads(linear(h, w[f"{prefix}/attention/linear_0/weight"],
                               w[f"{prefix}/attention/linear_0/bias"], f"{prefix}.cross_q"),
                        dims.heads)  # fmt: skip
        kv_weight, kv_bias = (
            w[f"{prefix}/attention/linear_1/weight"],
            w[f"{prefix}/attention/linear_1/bias"],
        )
        k = split_heads(linear(encoder_states, kv_weight[: dims.width], kv_bias[: dims.width],
                               f"{prefix}.cross_k"), dims.heads)  # fmt: skip
        v = split_heads(linear(encoder_states, kv_weight[dims.width :], kv_bias[dims.width :],
                               f"{prefix}.cross_v"), dims.heads)  # fmt: skip
        attended = ops.scaled_dot_product_attention(
            q,
            cached(f"decoder.{i}.cross.key", k),
            cached(f"decoder.{i}.cross.value", v),
            zero_mask,
            scale,
            causal=False,
            name=f"decoder.layers.{i}.encoder_attn.sdpa",
        )
        x = ops.add(
            x,
            linear(
                merge_heads(attended),
                w[f"{prefix}/attention/linear_2/weight"],
                w[f"{prefix}/attention/linear_2/bias"],
                f"{prefix}.cross_out",
            ),
        )
        x = feed_forward(x, w, prefix)
    x = layer_norm(x, w["decoder/layer_norm/gamma"], w["decoder/layer_norm/beta"], "decoder.norm")
    logits = ops.matmul(x, embedding, transpose_a=False, transpose_b=True)
    result = ops.result(logits)
    result.output(0).set_names({"logits"})
    return Model([result], sinks, [input_ids, encoder_states, beam_idx], "whisper_decoder")


def _parameter(name: str, shape: list[int], element_type: Type) -> Node:
    parameter = ops.parameter(PartialShape(shape), element_type, name=name)
    parameter.output(0).set_names({name})
    return parameter


def _variable(name: str, shape: list[int]) -> Variable:
    info = VariableInfo()
    info.variable_id = name
    info.data_type = Type.f32
    info.data_shape = PartialShape(shape)
    return Variable(info)


def _causal_mask(past_length: Node, new_tokens: Node, total: Node) -> Node:
    """[new tokens, total]: 0 where token i (at position past + i) may see position j."""
    step = ops.constant(np.int64(1))
    rows = ops.unsqueeze(ops.range(past_length, total, step, output_type=Type.i64), i64(1))
    columns = ops.unsqueeze(ops.range(ops.constant(np.int64(0)), total, step,
                                      output_type=Type.i64), i64(0))  # fmt: skip
    return ops.select(ops.greater(columns, rows), ops.constant(np.float32(_MASKED)),
                      ops.constant(np.float32(0)))  # fmt: skip


def _dim(node: Node, axis: int) -> Node:
    """The length of `node` along `axis`, as a scalar."""
    return ops.gather(ops.shape_of(node), ops.constant(np.int64(axis)), np.int64(0))
