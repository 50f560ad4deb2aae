"""A tokenizer IR that never cuts a prompt: found, mended and checked before a model serves.

OpenVINO GenAI's GGUF reader writes into every tokenizer it builds a `Minimum` of the token
count with a constant 8192 (`gguf_tokenizer.cpp`, `MAX_LENGTH`), then keeps only that many
tokens from the end: a longer prompt lost its beginning (where clients put the system prompt
and the tools) without a word, whatever the model's window. The IR that conversion and the
first load save carried the same cap. Tokenizers that `openvino_tokenizers` converts from
Hugging Face files truncate only when asked (GenAI turns their truncation into a state that
is off by default), so they pass unchanged.

`untruncate` rewrites such a cap in a saved tokenizer IR so that no count is cut; the engine
then checks every prompt against the model's window itself (`generation.check_context`), as
the contract asks. `check_whole` proves it on the loaded tokenizer: a probe longer than the
window must come back whole, whatever shape the graph has.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from ovrunner.engines.model_files import TOKENIZER_XML
from ovrunner.errors import ModelLoadFailedError

log = logging.getLogger(__name__)

# The cap a mended tokenizer carries: larger than any prompt the body cap lets through.
UNLIMITED = 2**31 - 1
# One unit of the probe: a word the pre-tokenizers of BPE and SentencePiece vocabularies
# split on its own, so the count grows with every repetition.
_PROBE_UNIT = " word"
_PROBE_SAMPLE = 256


def truncation_caps(model: Any) -> list[Any]:
    """The scalar integer constants a `Minimum` takes the token count down to: GenAI's GGUF
    tokenizer's cap, the one truncation a tokenizer IR applies unasked."""
    caps = []
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Minimum":
            continue
        for value in node.input_values():
            source = value.get_node()
            if (source.get_type_name() == "Constant"
                    and source.get_output_element_type(0).is_integral()
                    and source.get_output_partial_shape(0).rank.get_length() == 0):  # fmt: skip
                caps.append(source)
    return caps


def caps_in(directory: Path) -> list[int]:
    """The truncation caps of the tokenizer IR in `directory` (none: it cuts nothing)."""
    import openvino
    import openvino_tokenizers  # noqa: F401 - registers the tokenizer operations

    model = openvino.Core().read_model(directory / TOKENIZER_XML)
    return [int(cap.get_data()) for cap in truncation_caps(model)]


def untruncate(directory: Path) -> bool:
    """Lift every cap below `UNLIMITED` in the tokenizer IR in `directory`; whether it had any.

    The new IR is written beside the old one and moved over it, weights first: the old
    weights are memory-mapped while the model is read (writing over them in place crashes the
    process), and an interrupted rewrite leaves the old, complete IR.
    """
    import numpy as np
    import openvino
    import openvino_tokenizers  # noqa: F401 - registers the tokenizer operations

    xml = directory / TOKENIZER_XML
    model = openvino.Core().read_model(xml)
    caps = [cap for cap in truncation_caps(model) if int(cap.get_data()) < UNLIMITED]
    if not caps:
        return False
    for cap in caps:
        lifted = openvino.op.Constant(np.array(UNLIMITED, dtype=cap.get_data().dtype))
        for target in list(cap.output(0).get_target_inputs()):
            target.replace_source_output(lifted.output(0))
    staged = directory / f".untruncated-{os.getpid()}.xml"
    try:
        openvino.save_model(model, staged, compress_to_fp16=False)
        del model
        os.replace(staged.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(staged, xml)
    finally:
        staged.unlink(missing_ok=True)
        staged.with_suffix(".bin").unlink(missing_ok=True)
    log.info("lifted the tokenizer's %d-token cap in %s", min(int(c.get_data()) for c in caps),
             directory)  # fmt: skip
    return True


def check_whole(tokenizer: Any, window: int, model_id: str) -> None:
    """Refuse a tokenizer that cuts a prompt the window would hold: a probe of more tokens
    than the window must come back with every token (about 10 ms for 100,000 tokens)."""
    sample = _count(tokenizer, _PROBE_UNIT * _PROBE_SAMPLE)
    if sample < _PROBE_SAMPLE // 4:  # a vocabulary that merges the unit: probe is meaningless
        log.warning("the tokenizer of %s merges the probe; its input limit is not checked",
                    model_id)  # fmt: skip
        return
    # Enough whole samples for a sample's worth of tokens past the window.
    samples = math.ceil((window + 1) / sample) + 1
    counted = _count(tokenizer, _PROBE_UNIT * (_PROBE_SAMPLE * samples))
    if counted <= window:
        raise ModelLoadFailedError(
            f"the tokenizer of {model_id!r} cuts its input to {counted} tokens, below the "
            f"model's context window of {window}: prompts would lose their beginning. Import "
            "the model again, or mend its openvino_tokenizer.xml"
        )


def _count(tokenizer: Any, text: str) -> int:
    return int(tokenizer.encode(text, add_special_tokens=False).input_ids.shape[1])


def build_from_gguf(gguf: Path, directory: Path) -> None:
    """Save the tokenizer and detokenizer IR that OpenVINO GenAI builds from `gguf` in
    `directory`, its cap lifted. Run as a process of its own (`main`): the build holds the GIL
    for its whole 2-4 s, which would stall the server's event loop, probes included."""
    import openvino_genai

    link = directory / gguf.name
    link.symlink_to(gguf.resolve())
    try:
        openvino_genai.Tokenizer(str(link), enable_save_ov_model=True)
    finally:
        link.unlink()
    untruncate(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save a GGUF's tokenizer IR, uncapped")
    parser.add_argument("gguf", type=Path)
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    build_from_gguf(args.gguf, args.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
