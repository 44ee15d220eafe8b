"""Lines for the person running a command: one event, one line, whatever a file name holds."""

from __future__ import annotations

import unicodedata

_LINE_BREAKING = {"Cc", "Zl", "Zp"}  # controls, U+2028 and U+2029 (line and paragraph separators)
_BIDI_CONTROLS = {*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def _escaped(char: str) -> bool:
    return unicodedata.category(char) in _LINE_BREAKING or char in _BIDI_CONTROLS


def one_line(text: str) -> str:
    """``text`` with control characters (a newline or a tab in a file name, an escape sequence), line
    separators and bidirectional overrides written as Python escapes (``\\n``, ``\\x1b``, ``\\u202e``),
    so a message stays one line, cannot move the cursor and reads in the order it was written."""
    if not any(_escaped(char) for char in text):
        return text
    return "".join(repr(char)[1:-1] if _escaped(char) else char for char in text)


def log_field(text: str) -> str:
    """``text`` for a quoted field of a log line: :func:`one_line`, and ``"`` and ``\\`` as ``\\x22`` and
    ``\\x5c``, so a client's path can neither end the line nor close the quotes early."""
    return one_line(text.replace("\\", "\\x5c").replace('"', "\\x22"))
