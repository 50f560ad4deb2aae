"""How fast OpenVINO's CPU plugin multiplies by compressed weights, layout by layout.

A decode step of a small LLM is almost all `FullyConnectedCompressed` (bench.profile_decode), so
the weight layout the conversion picks decides its speed. This builds the matmuls of a
Qwen2.5-0.5B-shaped model (24 MLP pairs 896 -> 4864 -> 896, and the 151,936-row output head)
with random weights, compresses them with NNCF in each layout, and times them at 1, 8 and 16
rows (streams), reporting milliseconds a call, the weight bytes read per second and the
multiply-adds per second. Far more weight than the L3 cache holds, as in a real model.

    python -m bench.fc_kernels [--layouts int8_asym int8_sym int4_sym_g128 ...] [--rows 1 8 16]
                               [--config DYNAMIC_QUANTIZATION_GROUP_SIZE=0 ...]

`--config` sets a CPU plugin property (default: f32 inference, everything else the plugin's
own choice), to compare e.g. dynamic activation quantization on and off on one CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

HIDDEN, INTERMEDIATE, LAYERS, VOCAB = 896, 4864, 24, 151936

# name -> NNCF compress_weights arguments (None: the f32 or f16 model as it is).
LAYOUTS: dict[str, dict[str, Any] | None] = {
    "f32": None,
    "f16": None,
    "int8_asym": {"mode": "INT8_ASYM"},
    "int8_sym": {"mode": "INT8_SYM"},
    "int4_sym_channel": {"mode": "INT4_SYM", "group_size": -1},
    "int4_asym_channel": {"mode": "INT4_ASYM", "group_size": -1},
    "int4_sym_g128": {"mode": "INT4_SYM", "group_size": 128},
    "int4_asym_g128": {"mode": "INT4_ASYM", "group_size": 128},
    "int4_sym_g64": {"mode": "INT4_SYM", "group_size": 64},
    "int4_asym_g64": {"mode": "INT4_ASYM", "group_size": 64},
    "int4_sym_g32": {"mode": "INT4_SYM", "group_size": 32},
    "int4_asym_g32": {"mode": "INT4_ASYM", "group_size": 32},
}


def build(part: str, f16: bool) -> Any:
    """The MLP stack (`part` = "mlp") or the output head ("head") as an OpenVINO model."""
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)

    def weight(rows: int, cols: int) -> Any:
        values = (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(
            np.float16 if f16 else np.float32
        )
        constant = ops.constant(values)
        return ops.convert(constant, np.float32) if f16 else constant

    x = ops.parameter([-1, HIDDEN], np.float32, name="x")
    out: Any = x
    if part == "head":
        out = ops.matmul(out, weight(VOCAB, HIDDEN), False, True)
    else:
        for _ in range(LAYERS):
            up = ops.relu(ops.matmul(out, weight(INTERMEDIATE, HIDDEN), False, True))
            out = ops.matmul(up, weight(HIDDEN, INTERMEDIATE), False, True)
    return ov.Model([out], [x], part)


def weight_bytes(model: Any) -> int:
    """Bytes of the model's constants (its weights, scales and zero points)."""
    total = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            shape = op.get_output_shape(0)
            size = int(np.prod(list(shape))) if len(shape) else 1
            total += size * op.get_output_element_type(0).bitwidth // 8
    return total


def time_calls(compiled_model: Any, rows: int, seconds: float) -> float:
    request = compiled_model.create_infer_request()
    x = np.random.default_rng(1).standard_normal((rows, HIDDEN), dtype=np.float32)
    for _ in range(3):
        request.infer({"x": x})
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        request.infer({"x": x})
        calls += 1
    return (time.perf_counter() - started) / calls


def main(argv: list[str] | None = None) -> int:
    import nncf
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--rows", nargs="+", type=int, default=[1, 8, 16])
    parser.add_argument("--parts", nargs="+", default=["mlp", "head"], choices=["mlp", "head"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    config = {"INFERENCE_PRECISION_HINT": "f32", **dict(c.split("=", 1) for c in args.config)}
    core = ov.Core()
    print(f"openvino {ov.__version__}, nncf {nncf.__version__}, {config}")
    print(f"{'part':5s} {'layout':18s} {'MB':>7s} " + " ".join(
        f"{'M=' + str(m) + ' ms':>9s} {'GB/s':>6s} {'GFMA/s':>7s}" for m in args.rows))  # fmt: skip
    for part in args.parts:
        macs = VOCAB * HIDDEN if part == "head" else LAYERS * 2 * HIDDEN * INTERMEDIATE
        for layout in args.layouts:
            model = build(part, f16=layout == "f16")
            options = LAYOUTS[layout]
            if options is not None:
                options = dict(options, mode=getattr(nncf.CompressWeightsMode, options["mode"]))
                if layout.startswith("int4"):  # the head too, every weight in this layout
                    options.update(all_layers=True, ratio=1.0)
                model = nncf.compress_weights(model, **options)
            size = weight_bytes(model)
            compiled = core.compile_model(model, "CPU", config)
            cells = []
            for rows in args.rows:
                call = time_calls(compiled, rows, args.seconds)
                cells.append(f"{call * 1e3:9.2f} {size / call / 1e9:6.1f} "
                             f"{rows * macs / call / 1e9:7.1f}")  # fmt: skip
            print(f"{part:5s} {layout:18s} {size / 1e6:7.1f} " + " ".join(cells), flush=True)
            del compiled, model
    return 0


if __name__ == "__main__":
    sys.exit(main())
