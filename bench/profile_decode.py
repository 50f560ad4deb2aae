"""Where one decode step's time goes, from OpenVINO's own counters (`PERF_COUNT`).

Compiles the IR that ovrunner saved beside a GGUF model (a store's model directory) as a plain
stateful model, prefills 30 tokens, then times single-token steps and sums each operation
type's time, and the largest matmuls by node.

    python -m bench.profile_decode MODEL_DIR [--precision f32] [--threads N] [--steps 20]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import openvino

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a directory holding openvino_model.xml")
    parser.add_argument("--precision", default="f32")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    properties: dict[str, object] = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": args.precision}
    if args.threads:
        properties["INFERENCE_NUM_THREADS"] = args.threads
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(f"{args.model_dir}/openvino_model.xml"), "CPU",
                                  properties)  # fmt: skip
    request = compiled.create_infer_request()

    def feed(ids: list[int], past: int) -> None:
        n = len(ids)
        request.infer({"input_ids": np.array([ids], dtype=np.int64),
                       "attention_mask": np.ones((1, past + n), dtype=np.int64),
                       "position_ids": np.arange(past, past + n, dtype=np.int64)[None],
                       "beam_idx": np.zeros(1, dtype=np.int32)})  # fmt: skip

    request.reset_state()
    feed(list(range(1, 31)), 0)
    for i in range(5):  # warm
        feed([100 + i], 30 + i)
    by_type: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    wall = 0.0
    for i in range(args.steps):
        started = time.perf_counter()
        feed([200 + i], 35 + i)
        wall += time.perf_counter() - started
        for info in request.profiling_info:
            seconds = info.real_time.total_seconds()
            by_type[info.node_type] += seconds
            if info.node_type.startswith("FullyConnected"):
                by_node[f"{info.node_name} ({info.exec_type})"] += seconds
    total = sum(by_type.values())
    ms = 1000 / args.steps
    print(f"{args.precision}, threads {args.threads or 'all'}: {wall * ms:.2f} ms a token "
          f"(counters: {total * ms:.2f} ms)")  # fmt: skip
    for name, seconds in by_type.most_common(6):
        print(f"  {name:40s} {seconds * ms:7.3f} ms  {seconds / total:6.1%}")
    print(f"  matmuls: {len(by_node)}, the largest:")
    for name, seconds in by_node.most_common(3):
        print(f"    {name[:60]:60s} {seconds * ms:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
