"""Errors people can act on: each carries a one-line message naming what was wrong and the fix."""

import difflib
from collections.abc import Iterable


class MoeplanError(Exception):
    """Base of every error the CLI turns into a one-line message (never a traceback)."""


class ModelNotFound(MoeplanError):
    pass


class UnsupportedArchitecture(MoeplanError):
    pass


class BadConfig(MoeplanError):
    pass


class UnknownQuant(MoeplanError):
    pass


class BadGGUF(MoeplanError):
    pass


class UnknownHardware(MoeplanError):
    """A GPU name the catalog does not know, or a rig description moeplan cannot read."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' — did you mean X?' for the closest choice, or '' when nothing is close."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" — did you mean {by_lower[close[0]]}?" if close else ""


class HubError(MoeplanError):
    """The Hugging Face Hub could not give what a `hf://` reference names (not found, gated, offline …)."""


def printable(text: str, limit: int = 80) -> str:
    """A name from a file as an error message may show it: control characters (a newline would make
    the message two lines, an escape sequence would reach the terminal) escaped, long ones cut."""
    cut = text[:limit]
    shown = cut if cut.isprintable() else repr(cut)[1:-1]
    return shown + ("…" if len(text) > limit else "")
