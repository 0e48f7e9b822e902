"""Text from outside made safe for a terminal: marks, labels, MQTT payloads, device names.

A string that holds ESC (or any other control character) is an instruction to the terminal that
prints it: blinking, a new window title, a cleared screen, a rewritten line. Everything that
prints text it did not write itself (the dashboard, `watch` and its fleet view, `history`,
`mark`) passes it through :func:`safe` first: control characters (C0, DEL, C1), line and
paragraph separators and the bidirectional overrides that reorder what is shown come out as
visible escapes (``\\x1b``, ``\\u202e``), and a length limit keeps one field from filling a screen.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, line/paragraph separators, bidi embeddings, overrides and isolates
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
LIMIT = 200  # characters of one field shown (a mark is at most 200)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object, limit: int = LIMIT) -> str:
    """``str(value)`` with every unsafe character escaped, cut to ``limit`` characters (plus "...")."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return UNSAFE.sub(_escape, text)


def unsafe(text: str) -> bool:
    """Whether ``text`` holds a character that :func:`safe` would escape."""
    return UNSAFE.search(text) is not None


def safe_tree(value: object, limit: int = LIMIT) -> object:
    """A decoded JSON message with :func:`safe` applied to every string in it, keys included
    (consistently, so a label still finds its probability)."""
    if isinstance(value, str):
        return safe(value, limit)
    if isinstance(value, dict):
        return {safe(k, limit): safe_tree(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_tree(v, limit) for v in value]
    return value
