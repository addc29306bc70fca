"""Error types and the one helper that shapes every error message."""

from __future__ import annotations

__all__ = ["BackendUnavailable", "msg"]


class BackendUnavailable(RuntimeError):
    """A backend needs a tool (g++, pynq, a board) that is not available here."""


def msg(what: str, constraint: str, got: object = None, hint: str | None = None) -> str:
    """Format ``what: constraint; got value`` plus an optional hint.

    >>> msg("width", "must be in 1..64", 0)
    'width: must be in 1..64; got 0'
    """
    text = f"{what}: {constraint}"
    if got is not None:
        text += f"; got {got!r}"
    if hint:
        text += f" ({hint})"
    return text
