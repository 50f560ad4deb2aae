"""Perplexity of a converted model beside llama.cpp's on the original GGUF: the quality check
of model conversion (docs/models.md).

The text is `bench/data/perplexity.txt` (this project's own prose and code, fixed). Both sides
score it as `llama-perplexity` does: the token stream cut in windows of `--ctx` tokens, each
window evaluated from a fresh state, and only the second half of each window scored (every
scored token has at least ctx/2 tokens of context), so the two numbers are comparable.

    python -m bench.perplexity IR_DIR [IR_DIR ...] [--gguf ORIGINAL.gguf] [--ctx 512]
                               [--config DYNAMIC_QUANTIZATION_GROUP_SIZE=128 ...]
                               [--llama-perplexity bench/.peer/llama-perplexity]

IR_DIR is a directory with `openvino_model.xml` and its tokenizer IR: a stored model's
`model/` directory, as `ovrunner models import` converts it. Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TEXT = Path(__file__).parent / "data" / "perplexity.txt"
LLAMA_PERPLEXITY = Path("bench/.peer/llama-perplexity")


def openvino_perplexity(
    ir_dir: Path, text: str, ctx: int, properties: dict[str, str]
) -> dict[str, float]:
    import openvino
    import openvino_genai

    tokens = list(
        openvino_genai.Tokenizer(str(ir_dir)).encode(text, add_special_tokens=False)
        .input_ids.data[0]
    )  # fmt: skip
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(ir_dir / "openvino_model.xml"), "CPU", properties)
    request = compiled.create_infer_request()
    chunks = len(tokens) // ctx
    first = ctx // 2
    nll, count = 0.0, 0
    started = time.perf_counter()
    for i in range(chunks):
        window = np.array([tokens[i * ctx : (i + 1) * ctx]], dtype=np.int64)
        request.reset_state()
        request.infer({"input_ids": window,
                       "attention_mask": np.ones_like(window),
                       "position_ids": np.arange(ctx, dtype=np.int64)[None],
                       "beam_idx": np.zeros(1, dtype=np.int32)})  # fmt: skip
        logits = request.get_tensor("logits").data[0, first : ctx - 1].astype(np.float64)
        targets = window[0, first + 1 : ctx]
        top = logits.max(axis=-1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
        nll += float((log_z - logits[np.arange(len(targets)), targets]).sum())
        count += len(targets)
    return {"ppl": math.exp(nll / count), "tokens": len(tokens), "chunks": chunks,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def llama_perplexity(binary: Path, gguf: Path, ctx: int) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(binary), "-m", str(gguf), "-f", str(TEXT), "-c", str(ctx), "-b", str(ctx),
         "-t", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = done.stdout + done.stderr
    final = re.search(r"Final estimate: PPL = ([0-9.]+)", out)
    chunks = re.search(r"calculating perplexity over (\d+) chunks", out)
    if final is None:
        raise RuntimeError(f"llama-perplexity printed no estimate:\n{out[-2000:]}")
    return {"ppl": float(final.group(1)), "chunks": int(chunks.group(1)) if chunks else -1,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ir_dirs", nargs="*", type=Path)
    parser.add_argument("--gguf", type=Path, help="the original GGUF, scored by llama.cpp")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--precision", default="f32", help="OpenVINO's inference precision")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="more CPU plugin properties, e.g. DYNAMIC_QUANTIZATION_GROUP_SIZE=128")  # fmt: skip
    parser.add_argument("--llama-perplexity", type=Path, default=LLAMA_PERPLEXITY)
    args = parser.parse_args(argv)
    properties = {"INFERENCE_PRECISION_HINT": args.precision,
                  **dict(c.split("=", 1) for c in args.config)}  # fmt: skip
    text = TEXT.read_text()
    reference = None
    if args.gguf is not None:
        reference = llama_perplexity(args.llama_perplexity, args.gguf, args.ctx)
        print(json.dumps({"model": str(args.gguf), "system": "llama.cpp", **reference}))
    for ir_dir in args.ir_dirs:
        result = openvino_perplexity(ir_dir, text, args.ctx, properties)
        if reference is not None:
            result["vs_original"] = round(result["ppl"] / reference["ppl"], 4)
        print(json.dumps({"model": str(ir_dir), "system": "openvino", **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
