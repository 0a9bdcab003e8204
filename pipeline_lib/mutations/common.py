"""Types shared by the mutation operators of every language."""

from __future__ import annotations

from dataclasses import dataclass

# A wrong single-character literal: the bracket's partner, a neighbouring separator, a different sign.
CHAR_SWAPS = {"(": ")", ")": "(", "[": "]", "]": "[", "{": "}", "}": "{", "<": ">", ">": "<", ",": ";", ";": ",",
              ".": ",", ":": ";", "-": "+", "+": "-", "*": "/", "/": "*", "0": "1", "1": "0", "a": "b", "A": "B",
              " ": "", "": " ", "=": ":", "\n": " ", "|": "&", "&": "|", "#": "$", '"': "'", "'": '"'}


@dataclass(frozen=True)
class Mutant:
    """One single-site mutation of a program's source file."""

    operator: str
    source: str  # the whole mutated file
    line: int  # 1-based line of the change in the original
    description: str  # e.g. "line 4: '<' -> '>='"


def single_char_swap(value: str) -> str | None:
    """The mutant of a 0/1-character literal, or None when there is none (longer strings are left alone)."""
    return CHAR_SWAPS.get(value) if len(value) <= 1 else None
