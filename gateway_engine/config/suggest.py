"""Readable validation messages: "did you mean" for misspelt names, and patterns said in words."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

DURATION_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*(ms|s|m|h)\s*$"
_SIMPLE = re.compile(r"\^\[([^\]]+)\]\[([^\]]+)\]\*\$")
_RANGES = {"a-z": "lower-case letters", "A-Z": "upper-case letters", "0-9": "digits"}
_RANGE = {"a-z": "a lower-case letter", "A-Z": "an upper-case letter", "0-9": "a digit"}


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def explain_pattern(pattern: str) -> str | None:
    """A regex of the schemas in words, when it has a simple form; None otherwise."""
    if pattern == DURATION_PATTERN:
        return "a duration is a number and a unit, ms, s, m or h (e.g. 500ms, 10s, 1.5m), or a number of seconds"
    simple = _SIMPLE.fullmatch(pattern)
    if simple:
        first, rest = simple.groups()
        if first == rest:
            return f"use only {_class_in_words(rest, 'and')}"
        return f"use only {_class_in_words(rest, 'and')}, beginning with {_class_in_words(first, 'or', _RANGE)}"
    return None


def _class_in_words(cls: str, last: str, ranges: dict[str, str] = _RANGES) -> str:
    """``a-z0-9_.-`` → ``lower-case letters, digits, '_', '.' and '-'``."""
    words = []
    for key, name in ranges.items():
        if key in cls:
            words.append(name)
            cls = cls.replace(key, "")
    words += [f"'{c}'" for c in cls]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"
