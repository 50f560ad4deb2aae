"""Small text helpers the streaming parsers share."""

BLANK = " \t\r\n"


def held_prefix(text: str, marker: str) -> int:
    """How many characters at the end of `text` could be the start of `marker`: text a
    stream must hold back until the next characters say whether the marker follows."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
