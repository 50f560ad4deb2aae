"""The Responses API's memory stays within its bounds, evicting the oldest first."""

from __future__ import annotations

from ovrunner.response_store import ResponseStore


def response(response_id: str, text: str = "") -> dict:
    return {"id": response_id, "output": [{"type": "message", "content": text}]}


def test_at_most_max_entries_are_kept_oldest_out_first() -> None:
    store = ResponseStore(max_entries=2, max_bytes=1 << 20)
    for name in ("a", "b", "c"):
        store.put(response(name), [])
    assert store.get("a") is None and store.get("b") and store.get("c") and len(store) == 2


def test_the_byte_bound_holds_and_an_answer_too_big_is_not_kept() -> None:
    store = ResponseStore(max_entries=100, max_bytes=1000)
    store.put(response("big", "x" * 2000), [])
    assert store.get("big") is None
    for i in range(10):
        store.put(response(str(i), "y" * 200), [])
    assert len(store) < 5 and store.get("9") is not None and store.get("0") is None


def test_none_are_kept_when_keeping_is_off_and_delete_says_what_it_did() -> None:
    store = ResponseStore(max_entries=0, max_bytes=1000)
    store.put(response("a"), [])
    assert store.get("a") is None and store.delete("a") is False
