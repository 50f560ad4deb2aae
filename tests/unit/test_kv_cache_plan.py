"""How large a runner's KV cache is: from the window and the memory, unless set."""

from __future__ import annotations

from ovrunner.engines.openvino import kv_cache
from ovrunner.engines.openvino.kv_cache import KV_MIN_TOKENS, plan

QWEN_05B = 24 * 2 * 2 * 64  # layers x (key, value) x kv heads x head size
PLENTY = 64 * 2**30


def test_two_windows_fit_where_memory_allows() -> None:
    sized = plan(elements=QWEN_05B, window=32_768, device="CPU", precision="f16",
                 size_gb=None, available=PLENTY)  # fmt: skip
    assert sized.tokens == 65_536 and sized.blocks == 65_536 // 32
    assert sized.bytes == 65_536 * QWEN_05B * 2  # 768 MiB, where a fixed 1 GB was reserved


def test_a_small_window_still_gets_room_for_many_streams() -> None:
    sized = plan(elements=QWEN_05B, window=2048, device="CPU", precision="f16",
                 size_gb=None, available=PLENTY)  # fmt: skip
    assert sized.tokens == KV_MIN_TOKENS


def test_memory_bounds_a_long_window(caplog) -> None:  # type: ignore[no-untyped-def]
    # An 8B Llama (32 layers, 8 kv heads of 128) with a 128K window, on 8 GiB available.
    llama_8b = 32 * 2 * 8 * 128
    sized = plan(elements=llama_8b, window=131_072, device="CPU", precision="f16",
                 size_gb=None, available=8 * 2**30)  # fmt: skip
    assert sized.bytes <= 0.4 * 8 * 2**30 + 32 * llama_8b * 2 and sized.tokens < 131_072
    assert "less than the model's window" in caplog.text  # said, not silent


def test_the_operators_size_wins() -> None:
    sized = plan(elements=QWEN_05B, window=32_768, device="CPU", precision="f32",
                 size_gb=0.5, available=1)  # fmt: skip
    assert abs(sized.bytes - 2**29) <= 32 * QWEN_05B * 4  # within a block of half a GiB
    assert plan(elements=QWEN_05B, window=32_768, device="GPU.0", precision="f16",
                size_gb=1, available=None).tokens % 16 == 0  # fmt: skip


def test_unknown_precisions_count_as_two_bytes() -> None:
    assert kv_cache.ELEMENT_BYTES["auto"] == 2
