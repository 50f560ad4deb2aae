"""The building blocks of Whisper's transformer as OpenVINO graph operations.

Weights stay f16 constants followed by a Convert to f32: the pattern OpenVINO's CPU plugin
folds into its matmuls (the weights stay half size in memory), as it does for any f16 IR.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino.opset15 as ops

# An op's output, as the opset functions take and return it (they are untyped).
Node = Any

LAYER_NORM_EPSILON = 1e-5


def weight(array: np.ndarray, name: str) -> Node:
    """A constant from a weight: f16 kept as f16 and converted (decompressed) at run time."""
    constant = ops.constant(np.ascontiguousarray(array), name=name)
    if array.dtype == np.float16:
        return ops.convert(constant, np.float32)
    return constant


def i64(*values: int) -> Node:
    return ops.constant(np.array(values, dtype=np.int64))


def layer_norm(x: Node, gamma: np.ndarray, beta: np.ndarray, name: str) -> Node:
    normalized = ops.mvn(x, i64(-1), normalize_variance=True, eps=LAYER_NORM_EPSILON,
                         eps_mode="inside_sqrt")  # fmt: skip
    return ops.add(ops.multiply(normalized, weight(gamma, f"{name}.gamma")),
                   weight(beta, f"{name}.beta"))  # fmt: skip


def linear(x: Node, w: np.ndarray, b: np.ndarray | None, name: str) -> Node:
    """x @ w.T + b, w as CTranslate2 stores it: (out features, in features)."""
    y = ops.matmul(x, weight(w, f"{name}.weight"), transpose_a=False, transpose_b=True)
    return y if b is None else ops.add(y, weight(b, f"{name}.bias"))


def gelu(x: Node) -> Node:
    return ops.gelu(x, approximation_mode="erf")


def split_heads(x: Node, heads: int) -> Node:
    """[batch, time, width] -> [batch, heads, time, width / heads]."""
    shaped = ops.reshape(x, i64(0, 0, heads, -1), special_zero=True)
    return ops.transpose(shaped, i64(0, 2, 1, 3))


def merge_heads(x: Node) -> Node:
    """[batch, heads, time, head width] -> [batch, time, width]."""
    return ops.reshape(ops.transpose(x, i64(0, 2, 1, 3)), i64(0, 0, -1), special_zero=True)


def feed_forward(x: Node, weights: dict[str, np.ndarray], prefix: str) -> Node:
    """The block's MLP, on its own pre-norm, added to the residual `x`."""
    h = layer_norm(x, weights[f"{prefix}/ffn/layer_norm/gamma"],
                   weights[f"{prefix}/ffn/layer_norm/beta"], f"{prefix}.ffn_norm")  # fmt: skip
    h = gelu(linear(h, weights[f"{prefix}/ffn/linear_0/weight"],
                    weights[f"{prefix}/ffn/linear_0/bias"], f"{prefix}.fc1"))  # fmt: skip
    h = linear(h, weights[f"{prefix}/ffn/linear_1/weight"],
               weights[f"{prefix}/ffn/linear_1/bias"], f"{prefix}.fc2")  # fmt: skip
    return ops.add(x, h)
