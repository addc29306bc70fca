"""Error types and the one helper that shapes every error message."""

from __future__ import annotations

__all__ = ["QUOTE_MAX", "BackendUnavailable", "msg", "quote"]


class BackendUnavailable(RuntimeError):
    """A backend needs a tool (g++, pynq, a board) that is not available here."""


#: The most characters of the offending value an error message quotes.
QUOTE_MAX = 80


def quote(got: object, limit: int = QUOTE_MAX) -> str:
    """``repr(got)``, cut to ``limit`` characters with ``...`` and the full length when longer
    (an error message never echoes a whole hostile input).

    >>> quote("x" * 100, 10)
    "'xxxxxx... (100 characters)"
    """
    text = repr(got)
    if len(text) <= limit:
        return text
    n = len(got) if isinstance(got, str | bytes) else len(text)
    return f"{text[: limit - 3]}... ({n} characters)"


def msg(what: str, constraint: str, got: object = None, hint: str | None = None) -> str:
    """Format ``what: constraint; got value`` plus an optional hint; the value is quoted by
    :func:`quote` (at most :data:`QUOTE_MAX` characters of it).

    >>> msg("width", "must be in 1..64", 0)
    'width: must be in 1..64; got 0'
    """
    text = f"{what}: {constraint}"
    if got is not None:
        text += f"; got {quote(got)}"
    if hint:
        text += f" ({hint})"
    return text
