"""Compiling a client's JSON schema (or regex, or grammar) as the engine will, before the
request is admitted.

OpenVINO GenAI compiles a request's `json_schema` (with xgrammar) inside the pipeline's next
`step()`, after `add_request` has accepted it; a schema it cannot compile (an unknown `type`,
a `$ref` to nowhere, a `minimum` that is a string) fails that step, and the pipeline with it.
The runner then restarts its engine and resumes the other requests, but that costs every
client a pause. So each new schema is compiled first on a pipeline of the server's own, over
a tiny model it builds (`tiny_model`): xgrammar turns the schema into a grammar the same way
whatever the model, and its errors are the engine's. Compiling there takes about a millisecond
and `generate` releases the GIL; verdicts are cached, so a repeated schema costs a lookup.
A failed generate leaves that pipeline usable (observed on 2026.4), so it is built once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from ovrunner.errors import InvalidValueError

log = logging.getLogger(__name__)

# Schemas remembered, with their verdicts (a verdict is an error message or None).
CACHE_SIZE = 1024
_WHAT = {"json_schema": "the JSON schema", "regex": "the regular expression",
         "grammar": "the grammar"}  # fmt: skip
# xgrammar's messages start with a time and its source position: "[17:44:48] /…/x.cc:898: ".
_SOURCE_PREFIX = re.compile(r"^(\[[\d:]+\] )?\S+\.(cc|h|cpp):\d+: ")


class SchemaCheck:
    """Refuses (400) a JSON schema the engine's grammar compiler rejects."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._cache_size = cache_size
        self._verdicts: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._lock = threading.Lock()  # one compile at a time on the probe pipeline
        self._probe: _Probe | None = None
        self._unavailable = False
        self.compiles = 0  # how many schemas reached the compiler (the rest were cached)

    async def check(
        self, text: str, *, kind: str = "json_schema", param: str = "response_format"
    ) -> None:
        """`text` is a JSON schema, a regex or an EBNF grammar, as `kind` says."""
        key = (kind, text)
        if key in self._verdicts:
            self._verdicts.move_to_end(key)
            verdict = self._verdicts[key]
        else:
            verdict = await asyncio.to_thread(self._compile, text, kind)
            if self._unavailable:
                return  # could not build the probe: the runner's recovery is the guard
            self._verdicts[key] = verdict
            while len(self._verdicts) > self._cache_size:
                self._verdicts.popitem(last=False)
        if verdict is not None:
            raise InvalidValueError(f"{_WHAT[kind]} cannot be enforced: {verdict}", param=param)

    def warm_up(self) -> None:
        """Build the probe pipeline now (blocking, about 2 s) instead of at the first schema."""
        self._compile('{"type": "object"}')

    def _compile(self, text: str, kind: str = "json_schema") -> str | None:
        with self._lock:
            if self._probe is None and not self._unavailable:
                try:
                    self._probe = _Probe()
                except Exception as exc:  # noqa: BLE001 - any failure only disables the check
                    log.warning("the schema check is unavailable: %s", exc)
                    self._unavailable = True
            if self._probe is None:
                return None
            self.compiles += 1
            return self._probe.compile(text, kind)


class _Probe:
    """A continuous-batching pipeline on a tiny model, with room for one short request."""

    def __init__(self) -> None:
        import openvino_genai as genai

        from ovrunner.engines.tiny_model import build_tiny_gguf

        self._genai = genai
        self._directory = tempfile.TemporaryDirectory(prefix="ovrunner-schema-check-")
        path = build_tiny_gguf(Path(self._directory.name) / "probe.gguf", vocab_size=300,
                               hidden=16, layers=1, heads=2, kv_heads=1, ffn=16)  # fmt: skip
        scheduler = genai.SchedulerConfig()
        scheduler.num_kv_blocks = 16
        scheduler.max_num_batched_tokens = 64
        scheduler.max_num_seqs = 1
        scheduler.dynamic_split_fuse = False
        self._pipeline = genai.ContinuousBatchingPipeline(
            str(path), scheduler, "CPU", {"INFERENCE_NUM_THREADS": 1}
        )
        self._defaults = self._pipeline.get_config()

    def compile(self, text: str, kind: str = "json_schema") -> str | None:
        config = self._genai.GenerationConfig()
        config.max_new_tokens = 1
        config.apply_chat_template = False
        config.eos_token_id = self._defaults.eos_token_id
        config.stop_token_ids = self._defaults.stop_token_ids
        config.structured_output_config = self._genai.StructuredOutputConfig(**{kind: text})
        try:
            self._pipeline.generate(["a"], [config])
        except RuntimeError as exc:
            return _readable(str(exc))
        return None


def _readable(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "rejected"
    return _SOURCE_PREFIX.sub("", first)[:300]


@functools.cache
def shared_schema_check() -> SchemaCheck:
    """The check both OpenVINO engines use: verdicts do not depend on the engine."""
    return SchemaCheck()
