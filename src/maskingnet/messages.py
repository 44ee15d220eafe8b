"""Lines for the person running a command: one event, one line, whatever a file name holds."""

from __future__ import annotations

import unicodedata


def one_line(text: str) -> str:
    """``text`` with control characters (a newline or a tab in a file name, an escape sequence) written as
    Python escapes (``\\n``, ``\\x1b``), so a message stays one line and cannot move the cursor."""
    if not any(unicodedata.category(char) == "Cc" for char in text):
        return text
    return "".join(repr(char)[1:-1] if unicodedata.category(char) == "Cc" else char for char in text)
