"""The Responses API's memory: recent answers with their input, for `previous_response_id`
and `GET /v1/responses/{id}`.

It lives in the server process only (a restart forgets it, as a local server should not
write conversations to disk unasked), bounded twice: at most `max_entries` answers and
`max_bytes` of their JSON, the oldest evicted first.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the response object, as it was sent
    input_items: list[dict[str, Any]]  # the whole conversation it answered, as items
    size: int


class ResponseStore:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._bytes = 0

    def put(self, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        size = len(json.dumps(response)) + len(json.dumps(input_items))
        if self._max_entries == 0 or size > self._max_bytes:
            return
        self.delete(response["id"])
        self._entries[response["id"]] = StoredResponse(response, input_items, size)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def get(self, response_id: str) -> StoredResponse | None:
        return self._entries.get(response_id)

    def delete(self, response_id: str) -> bool:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry is not None

    def __len__(self) -> int:
        return len(self._entries)
