"""Errors people can act on: each carries a one-line message naming what was wrong and the fix."""

import difflib
import re
from collections.abc import Callable, Iterable
from functools import lru_cache


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


class BadInput(MoeplanError):
    """A query parameter out of its bounds (too long, negative context ...)."""


@lru_cache(maxsize=1 << 14)  # the GPU catalog's ~5,000 names are split once, not per suggestion
def name_tokens(name: str) -> tuple[str, ...]:
    """'Qwen3.5-35B-A3B' -> ('qwen', '3.5', '35', 'b', 'a', '3', 'b'): the words and numbers a name
    is made of, so names compare by their parts rather than by letters."""
    return tuple(re.findall(r"[a-z]+|[0-9]+(?:\.[0-9]+)?", name.lower()))


def _holds_in_order(typed: tuple[str, ...], name: tuple[str, ...]) -> bool:
    rest = iter(name)
    return all(any(t == n for n in rest) for t in typed)


def _same_family(typed: tuple[str, ...], name: tuple[str, ...]) -> bool:
    """Whether a name belongs to the family the typed one starts with: its first word ('qwen',
    'rtx'), with the model number after a one- or two-letter prefix ('H100', 'MI300', 'M3'), or for
    a bare number its first digit and length ('4099' ~ '4090', not '300')."""
    first = typed[0]
    if first[0].isdigit():
        return any(n[0] == first[0] and len(n) == len(first) for n in name if n[0].isdigit())
    return _holds_in_order(typed[:2] if len(first) <= 2 else typed[:1], name)


def _size_at(parts: tuple[str, ...]) -> int | None:
    """Where a model name's parameter count is: the first number followed by 'b' or 'm' ('35', 'b')."""
    return next(
        (i for i in range(len(parts) - 1) if parts[i][0].isdigit() and parts[i + 1] in ("b", "m")),
        None,
    )


# Words that name a model's size or tier within its line: 'intern-s1-mini' is not Intern-S1, nor
# 'mistral-small' Mistral Large, so one typed must be in a suggestion.
SIZE_WORDS = frozenset(
    {
        "tiny",
        "mini",
        "nano",
        "small",
        "medium",
        "large",
        "lite",
        "flash",
        "air",
        "pro",
        "max",
        "ultra",
        "super",
    }
)


def _numbers(parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(t for t in parts if t[0].isdigit())


def same_model_line(typed: tuple[str, ...], name: tuple[str, ...]) -> bool:
    """Whether a catalog name is of the model line and size typed: its first word, the version
    numbers typed ('qwen 2.5' is not 'qwen 3.5', 'mistral small 3.2' not 'mistral small 4') and the
    parameter count where one is typed ('72b' is not '2b'), and any size word typed ('mini',
    'flash': SIZE_WORDS), so only the rest can be a typo."""
    if any(t in SIZE_WORDS and t not in name for t in typed):
        return False
    at_typed, at_name = _size_at(typed), _size_at(name)
    if at_typed is not None and (
        at_name is None or name[at_name : at_name + 2] != typed[at_typed : at_typed + 2]
    ):
        return False
    versions = _numbers(typed[:at_typed] if at_typed is not None else typed)
    theirs = _numbers(name[:at_name] if at_typed is not None and at_name is not None else name)
    first_word = next((t for t in typed if not t[0].isdigit()), None)
    return theirs[: len(versions)] == versions and (first_word is None or first_word in name)


def did_you_mean(
    word: str,
    choices: Iterable[str],
    same_family: Callable[[tuple[str, ...], tuple[str, ...]], bool] | None = None,
) -> str:
    """' — did you mean X?' (or 'X, Y or Z?'), or '' when nothing is close.

    Names that hold every part typed, in order, come first ('Qwen3.5-35B' -> qwen3.5-35b-a3b: a
    shortened name); otherwise the closest spelling (difflib) among names of the same family, so a
    typo never suggests an unrelated part that happens to share letters ('2x3090' is not 'X300').
    `same_family`, where given, narrows both to the names it accepts (models: `same_model_line`)."""
    typed = name_tokens(word)
    if not typed:
        return ""
    by_lower = {c.lower(): c for c in choices}
    parts = {c: name_tokens(c) for c in by_lower}
    related = [c for c in by_lower if same_family is None or same_family(typed, parts[c])]
    covering = [c for c in related if _holds_in_order(typed, parts[c]) and parts[c] != typed]
    if covering:
        ranked = sorted(covering, key=lambda c: (-difflib.SequenceMatcher(None, word.lower(), c).ratio(), c))
        close = ranked[:3]
    else:
        family = [c for c in related if same_family is not None or _same_family(typed, parts[c])]
        close = difflib.get_close_matches(word.lower(), family, n=1, cutoff=0.6)
    if not close:
        return ""
    shown = [by_lower[c] for c in close]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f" — did you mean {listed}?"


class HubError(MoeplanError):
    """The Hugging Face Hub could not give what a `hf://` reference names (not found, gated, offline …)."""


def printable(text: str, limit: int = 80) -> str:
    """A name from a file as an error message may show it: control characters (a newline would make
    the message two lines, an escape sequence would reach the terminal) escaped, long ones cut."""
    cut = text[:limit]
    shown = cut if cut.isprintable() else repr(cut)[1:-1]
    return shown + ("…" if len(text) > limit else "")
