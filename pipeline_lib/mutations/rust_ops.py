"""Semantic mutation operators for Rust source, applied at token level on the source text.

A small lexer splits the file into tokens so that comments, string/char literals, lifetimes and attributes are
never touched. Only the code before the module's ``#[cfg(test)]`` block is mutated (the tests stay intact). Binary
operators are recognised the way rustfmt writes them: a space on both sides and an operand on each side, which tells
``a < b`` from ``Vec<u8>`` and ``a * b`` from ``*a``. Whatever still slips through (a mutant that no longer
compiles) is caught when the tests are run and reported as ``does_not_compile``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline_lib.mutations.common import Mutant, single_char_swap

RUST_OPERATORS = ("flip_comparison", "boundary_comparison", "negate_comparison", "off_by_one", "wrong_constant",
                  "swap_operands", "wrong_arithmetic", "wrong_boolean", "remove_not", "negate_condition",
                  "remove_guard", "remove_statement")

FLIP_COMPARISON = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
BOUNDARY_COMPARISON = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
NEGATE_COMPARISON = {"==": "!=", "!=": "=="}
WRONG_ARITHMETIC = {"+": "-", "-": "+", "*": "+", "/": "*", "%": "/", "<<": ">>", ">>": "<<", "+=": "-=",
                    "-=": "+=", "*=": "+=", "/=": "*=", "%=": "/="}
WRONG_BOOLEAN = {"&&": "||", "||": "&&"}
NON_COMMUTATIVE = ("-", "/", "%")
# Binding strength of binary operators (higher binds tighter); openers and assignments bind loosest (0).
PRECEDENCE = {"*": 10, "/": 10, "%": 10, "+": 9, "-": 9, "<<": 8, ">>": 8, "&": 7, "^": 6, "|": 5, "==": 4,
              "!=": 4, "<": 4, ">": 4, "<=": 4, ">=": 4, "&&": 3, "||": 2, "..": 1, "..=": 1}
OPENERS = {"(", "[", "{", ",", ";", "=", "=>", "+=", "-=", "*=", "/=", "%=", "return", "if", "while", "match", "in"}
CLOSERS = {")", "]", "}", ",", ";", "{"}
KEYWORDS = {"as", "break", "const", "continue", "crate", "else", "enum", "extern", "fn", "for", "if", "impl", "in",
            "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "trait",
            "type", "unsafe", "use", "where", "while", "dyn"}
PUNCT = sorted([">>=", "<<=", "...", "..=", "::", "->", "=>", "==", "!=", "<=", ">=", "&&", "||", "+=", "-=", "*=",
                "/=", "%=", "^=", "&=", "|=", "<<", ">>", ".."], key=len, reverse=True)
TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*)
  | (?P<string>b?r(?P<hashes>\#*)"(?:.|\n)*?"(?P=hashes)|b?"(?:\\.|[^"\\])*")
  | (?P<char>b?'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^'\\])')
  | (?P<lifetime>'[A-Za-z_]\w*)
  | (?P<number>0[xob][0-9a-fA-F_]+(?:[iu](?:8|16|32|64|128|size))?
        |\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?(?:[iu](?:8|16|32|64|128|size)|f32|f64)?)
  | (?P<ident>[A-Za-z_]\w*)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str  # space | comment | string | char | lifetime | number | ident | punct
    text: str
    start: int
    end: int


def tokenize(source: str) -> list[Token]:
    """Split Rust source into tokens; nested /* */ comments are one comment token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        if source.startswith("/*", pos):
            depth, end = 0, pos
            while end < len(source):
                if source.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif source.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                    if depth == 0:
                        break
                else:
                    end += 1
            tokens.append(Token("comment", source[pos:end], pos, end))
            pos = end
            continue
        match = TOKEN_RE.match(source, pos)
        if match:
            kind = next(k for k in ("space", "comment", "string", "char", "lifetime", "number", "ident")
                        if match.group(k) is not None)
            tokens.append(Token(kind, match.group(0), pos, match.end()))
            pos = match.end()
            continue
        text = next((p for p in PUNCT if source.startswith(p, pos)), source[pos])
        tokens.append(Token("punct", text, pos, pos + len(text)))
        pos += len(text)
    return tokens


class _Code:
    """Significant tokens (no space/comment) of the mutable region, with helpers to look around a token."""

    def __init__(self, source: str):
        self.source = source
        self.all = tokenize(source)
        sig = [t for t in self.all if t.kind not in ("space", "comment")]
        self.end = len(source)
        for i in range(len(sig) - 5):
            if [t.text for t in sig[i:i + 7]] == ["#", "[", "cfg", "(", "test", ")", "]"]:
                self.end = sig[i].start
                break
        self.sig = self._drop_attributes(sig)
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]

    @staticmethod
    def _drop_attributes(sig: list[Token]) -> list[Token]:
        keep, i = [], 0
        while i < len(sig):
            if sig[i].text == "#" and i + 1 < len(sig) and sig[i + 1].text in ("[", "!"):
                depth, j = 0, i + 1
                while j < len(sig):
                    depth += sig[j].text == "["
                    depth -= sig[j].text == "]"
                    j += 1
                    if depth == 0 and sig[j - 1].text == "]":
                        break
                i = j
                continue
            keep.append(sig[i])
            i += 1
        return keep

    def line(self, offset: int) -> int:
        return self.source.count("\n", 0, offset) + 1

    def spaced(self, tok: Token) -> bool:
        return (tok.start > 0 and self.source[tok.start - 1] in " \n"
                and tok.end < len(self.source) and self.source[tok.end] in " \n")

    def is_binary(self, i: int) -> bool:
        """sig[i] is a binary operator: spaced, an operand before it and an operand after it."""
        if i == 0 or i + 1 >= len(self.sig) or not self.spaced(self.sig[i]):
            return False
        before, after = self.sig[i - 1], self.sig[i + 1]
        ends_operand = (before.kind in ("number", "string", "char") or before.text in (")", "]", "?")
                        or (before.kind == "ident" and before.text not in KEYWORDS))
        starts_operand = (after.kind in ("number", "string", "char", "ident") or after.text in ("(", "[", "!", "-",
                                                                                                 "*", "&"))
        return ends_operand and starts_operand

    def matching(self, i: int) -> int | None:
        """Index of the bracket closing sig[i]."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        opener, closer, depth = self.sig[i].text, pairs[self.sig[i].text], 0
        for j in range(i, len(self.sig)):
            depth += self.sig[j].text == opener
            depth -= self.sig[j].text == closer
            if depth == 0:
                return j
        return None

    def operand_left(self, i: int) -> int | None:
        """Index of the first token of the postfix expression ending at sig[i - 1] (ident, call, index, field)."""
        j = i - 1
        while j >= 0:
            tok = self.sig[j]
            if tok.text in (")", "]"):
                opener = "(" if tok.text == ")" else "["
                depth = 0
                while j >= 0:
                    depth += self.sig[j].text == tok.text
                    depth -= self.sig[j].text == opener
                    if depth == 0:
                        break
                    j -= 1
                j -= 1
                continue
            if tok.kind in ("ident", "number") and tok.text not in KEYWORDS or tok.text in (".", "::", "?"):
                j -= 1
                continue
            break
        return j + 1 if j + 1 < i else None

    def operand_right(self, i: int) -> int | None:
        """Index of the last token of the postfix expression starting at sig[i + 1]."""
        j = i + 1
        while j < len(self.sig):
            tok = self.sig[j]
            if tok.text in ("(", "["):
                end = self.matching(j)
                if end is None:
                    return None
                j = end + 1
                continue
            if tok.kind in ("ident", "number") and tok.text not in KEYWORDS or tok.text in (".", "::", "?"):
                j += 1
                continue
            break
        return j - 1 if j - 1 > i else None


def _edit(source: str, start: int, end: int, new: str) -> str:
    return source[:start] + new + source[end:]


def _mutants_at(code: _Code, i: int) -> Iterator[tuple[str, int, int, str, str]]:
    """(operator, start, end, replacement, description) for every mutation at sig[i]."""
    tok, sig = code.sig[i], code.sig
    text = tok.text
    if tok.kind == "punct":
        binary = code.is_binary(i)
        for name, table in (("flip_comparison", FLIP_COMPARISON), ("boundary_comparison", BOUNDARY_COMPARISON),
                            ("negate_comparison", NEGATE_COMPARISON), ("wrong_arithmetic", WRONG_ARITHMETIC),
                            ("wrong_boolean", WRONG_BOOLEAN)):
            if text in table and binary:
                yield name, tok.start, tok.end, table[text], f"'{text}' -> '{table[text]}'"
        if text in NON_COMMUTATIVE and binary:
            yield from _swap(code, i)
        if text == "!" and i + 1 < len(sig) and sig[i + 1].start == tok.end \
                and (sig[i + 1].kind == "ident" or sig[i + 1].text == "(") and sig[i - 1].kind != "ident":
            yield "remove_not", tok.start, tok.end, "", "'!' removed"
    elif tok.kind == "number" and re.fullmatch(r"\d[\d_]*(?:[iu](?:8|16|32|64|128|size))?", text) \
            and sig[i - 1].text != ".":
        digits = re.match(r"[\d_]+", text).group(0)
        value, suffix = int(digits.replace("_", "")), text[len(digits):]
        for new in (value + 1, value - 1):
            if new >= 0:
                yield "off_by_one", tok.start, tok.end, f"{new}{suffix}", f"{value} -> {new}"
    elif tok.kind == "ident" and text in ("true", "false"):
        new = "false" if text == "true" else "true"
        yield "wrong_constant", tok.start, tok.end, new, f"{text} -> {new}"
    elif tok.kind in ("char", "string") and not text.startswith(("b", "r")):
        inner = text[1:-1]
        new = single_char_swap(inner) if "\\" not in inner else None
        if new is not None and (tok.kind == "string" or len(new) == 1) and new not in ("'", '"'):
            quote = text[0]
            yield "wrong_constant", tok.start, tok.end, f"{quote}{new}{quote}", f"{text} -> {quote}{new}{quote}"
    elif tok.kind == "ident" and text in ("if", "while") and i + 1 < len(sig) and sig[i + 1].text != "let":
        yield from _condition(code, i)


def _swap(code: _Code, i: int) -> Iterator[tuple[str, int, int, str, str]]:
    sig, prec = code.sig, PRECEDENCE[code.sig[i].text]
    left, right = code.operand_left(i), code.operand_right(i)
    if left is None or right is None or left == 0 or right + 1 >= len(sig):
        return
    before, after = sig[left - 1].text, sig[right + 1].text
    before_ok = before in OPENERS or PRECEDENCE.get(before, 99) < prec
    after_ok = after in CLOSERS or PRECEDENCE.get(after, 99) <= prec
    if not (before_ok and after_ok) or before in ("-", "*", "&", "!") and not code.is_binary(left - 1):
        return
    a = code.source[sig[left].start:sig[i - 1].end]
    b = code.source[sig[i + 1].start:sig[right].end]
    if a == b:
        return
    new = b + code.source[sig[i - 1].end:sig[i + 1].start] + a
    yield "swap_operands", sig[left].start, sig[right].end, new, f"'{a}' <-> '{b}'"


def _condition(code: _Code, i: int) -> Iterator[tuple[str, int, int, str, str]]:
    """negate_condition for if/while, and remove_guard for an early-exit ``if`` statement without else."""
    sig = code.sig
    j, depth = i + 1, 0
    while j < len(sig) and not (sig[j].text == "{" and depth == 0):
        depth += sig[j].text in ("(", "[")
        depth -= sig[j].text in (")", "]")
        j += 1
    if j >= len(sig) or j == i + 1:
        return
    cond = code.source[sig[i + 1].start:sig[j - 1].end]
    yield "negate_condition", sig[i + 1].start, sig[j - 1].end, f"!({cond})", "condition negated"
    close = code.matching(j)
    if sig[i].text != "if" or close is None or sig[i - 1].text == "else":
        return
    if close + 1 < len(sig) and sig[close + 1].text == "else":
        return
    body_depth, exits = 0, False
    for k in range(j + 1, close):
        body_depth += sig[k].text in ("{", "(", "[")
        body_depth -= sig[k].text in ("}", ")", "]")
        exits |= body_depth == 0 and sig[k].text in ("return", "continue", "break")
    src = code.source
    line_start = src.rfind("\n", 0, sig[i].start) + 1
    line_end = src.find("\n", sig[close].end)
    line_end = len(src) if line_end < 0 else line_end + 1
    if exits and not src[line_start:sig[i].start].strip() and not src[sig[close].end:line_end].strip():
        first = src[line_start:src.find("\n", sig[i].start)].strip()
        yield "remove_guard", line_start, line_end, "", f"removed '{first}'"


STATEMENT_BLOCKERS = KEYWORDS | {"loop", "match", "else"}


def _statements(code: _Code) -> Iterator[tuple[str, int, int, str, str]]:
    """remove_statement: a one-line expression statement (assignment, call, compound assignment)."""
    sig, src = code.sig, code.source
    for i, tok in enumerate(sig):
        if tok.start >= code.end or i == 0 or sig[i - 1].text not in (";", "{", "}"):
            continue
        if not (tok.kind == "ident" and tok.text not in STATEMENT_BLOCKERS or tok.text == "*"):
            continue
        line_start = src.rfind("\n", 0, tok.start) + 1
        if src[line_start:tok.start].strip():
            continue
        j, depth = i, 0
        while j < len(sig) and not (sig[j].text == ";" and depth == 0):
            if sig[j].text == "{" or depth < 0:
                break
            depth += sig[j].text in ("(", "[")
            depth -= sig[j].text in (")", "]")
            j += 1
        if j >= len(sig) or sig[j].text != ";":
            continue
        line_end = src.find("\n", sig[j].end)
        line_end = len(src) if line_end < 0 else line_end + 1
        if src[sig[j].end:line_end].strip() or "\n" in src[tok.start:sig[j].end]:
            continue
        yield "remove_statement", line_start, line_end, "", f"removed '{src[tok.start:sig[j].end]}'"


def rust_mutants(source: str) -> list[Mutant]:
    """All single-site mutants of one Rust module's non-test code, in source order."""
    code = _Code(source)
    sites = [site for i, tok in enumerate(code.sig) if tok.start < code.end for site in _mutants_at(code, i)]
    sites.extend(_statements(code))
    mutants = []
    for operator, start, end, new, description in sorted(sites, key=lambda s: (s[1], s[0])):
        line = code.line(start)
        mutants.append(Mutant(operator, _edit(source, start, end, new), line, f"line {line}: {description}"))
    return mutants
