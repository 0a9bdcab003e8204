"""Semantic mutation operators for Python source, found with ``ast`` and applied as minimal text edits.

Each mutant changes one site: the edit touches only the operator token, literal or statement lines involved, so the
rest of the file is byte-identical to the original and a unified diff of buggy -> fixed is a few lines. Every mutant
is checked twice: the edited text must parse to exactly the AST obtained by applying the same change to the tree
(``ast.dump`` equality), otherwise it is reported as ``render_mismatch`` instead of being used.
"""

from __future__ import annotations

import ast
import io
import itertools
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline_lib.mutations.common import Mutant, single_char_swap

# Python's operator classes -> the class a mutant swaps in (one mutant per site and operator).
FLIP_COMPARISON = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}
BOUNDARY_COMPARISON = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
NEGATE_COMPARISON = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                     ast.Is: ast.IsNot, ast.IsNot: ast.Is}
WRONG_ARITHMETIC = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult,
                    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.LShift: ast.RShift,
                    ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitOr}
# Swapping the operands of these changes the result (commutative + and * would give equivalent mutants).
NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)
OP_TEXT = {ast.Lt: "<", ast.Gt: ">", ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
           ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
           ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>",
           ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.And: "and", ast.Or: "or"}
# Expressions that never need parentheses when moved to another operand position.
ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Call, ast.List, ast.Dict, ast.Set,
         ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.JoinedStr)
GUARD_EXITS = (ast.Return, ast.Raise, ast.Continue, ast.Break)
REMOVABLE_STATEMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Delete)

PYTHON_OPERATORS = ("flip_comparison", "boundary_comparison", "negate_comparison", "off_by_one", "wrong_constant",
                    "swap_operands", "wrong_arithmetic", "wrong_boolean", "remove_not", "negate_condition",
                    "remove_guard", "remove_statement", "swap_arguments")

Edit = tuple[int, int, str]  # (start offset, end offset, replacement) in the source string


@dataclass
class _Site:
    """One candidate change: text edits plus the same change applied to a copy of the tree."""

    operator: str
    edits: list[Edit]
    change_tree: Callable[[ast.AST, dict[ast.AST, ast.AST]], None]  # (copied node, parent map of the copy)
    line: int
    description: str
    wrap: tuple[int, int] | None = None  # span to parenthesise when the bare edit parses differently


class _Source:
    """Offsets and tokens of one Python file (ast columns are UTF-8 byte offsets; converted to str offsets)."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.tokens = [(tok, self.offset_chars(*tok.start), self.offset_chars(*tok.end))
                       for tok in tokenize.generate_tokens(io.StringIO(text).readline)]

    def offset_chars(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def offset(self, line: int, byte_col: int) -> int:
        raw = self.lines[line - 1].encode("utf-8")[:byte_col]
        return self.line_starts[line - 1] + len(raw.decode("utf-8", errors="replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def paren_span(self, node: ast.AST) -> tuple[int, int]:
        """The node's span widened over grouping parentheses written around it, e.g. ``(a - b)``."""
        start, end = self.span(node)
        while True:
            before = self.text[:start].rstrip()
            after = self.text[end:].lstrip()
            if before.endswith("(") and after.startswith(")"):
                start = len(before) - 1
                end = len(self.text) - len(after) + 1
            else:
                return start, end

    def operator_span(self, start: int, end: int) -> tuple[int, int] | None:
        """Span of the operator token(s) between two operand spans (skips parentheses and comments)."""
        found = [(s, e) for tok, s, e in self.tokens
                 if start <= s and e <= end and tok.type in (tokenize.OP, tokenize.NAME) and tok.string not in "()"]
        if not found:
            return None
        return found[0][0], found[-1][1]

    def whole_lines(self, node: ast.stmt) -> tuple[int, int] | None:
        """(start, end) of the full lines a statement occupies, or None if it shares a line with other code."""
        start, end = self.span(node)
        line_start = self.line_starts[node.lineno - 1]
        line_end = self.line_starts[node.end_lineno]
        if self.text[line_start:start].strip() or self.text[end:line_end].strip().split("#")[0].strip():
            return None
        return line_start, line_end


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def _replace_child(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise ValueError(f"{old!r} is not a child of {parent!r}")


def _remove_statement(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> None:
    parent = parents[node]
    for _field, value in ast.iter_fields(parent):
        if isinstance(value, list) and any(item is node for item in value):
            value[:] = [item for item in value if item is not node]
            return
    raise ValueError("statement not found in its parent")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first))
                ids.add(id(first.value))
    return ids


def _set_op(cls: type) -> Callable[[ast.AST, dict], None]:
    def change(node: ast.AST, _parents: dict) -> None:
        node.op = cls()
    return change


def _sites(node: ast.AST, src: _Source, parents: dict[ast.AST, ast.AST], skip: set[int]) -> Iterator[_Site]:
    if id(node) in skip:
        return
    parent = parents.get(node)
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            span = src.operator_span(src.span(operands[i])[1], src.span(operands[i + 1])[0])
            if span is None:
                continue
            for name, table in (("flip_comparison", FLIP_COMPARISON), ("boundary_comparison", BOUNDARY_COMPARISON),
                                ("negate_comparison", NEGATE_COMPARISON)):
                new = table.get(type(op))
                if new is None:
                    continue

                def change(n: ast.AST, _p: dict, i: int = i, new: type = new) -> None:
                    n.ops[i] = new()
                yield _Site(name, [(*span, OP_TEXT[new])], change, node.lineno,
                            f"'{OP_TEXT[type(op)]}' -> '{OP_TEXT[new]}'")
    if isinstance(node, ast.BinOp | ast.AugAssign):
        left = node.left if isinstance(node, ast.BinOp) else node.target
        right = node.right if isinstance(node, ast.BinOp) else node.value
        span = src.operator_span(src.span(left)[1], src.span(right)[0])
        new = WRONG_ARITHMETIC.get(type(node.op))
        if span is not None and new is not None:
            suffix = "=" if isinstance(node, ast.AugAssign) else ""
            yield _Site("wrong_arithmetic", [(*span, OP_TEXT[new] + suffix)], _set_op(new), node.lineno,
                        f"'{OP_TEXT[type(node.op)]}{suffix}' -> '{OP_TEXT[new]}{suffix}'", src.span(node))
        if isinstance(node, ast.BinOp) and isinstance(node.op, NON_COMMUTATIVE):
            yield from _swap_site("swap_operands", node, node.left, node.right, src,
                                  lambda n, _p: setattr_pair(n, "left", "right"))
    if isinstance(node, ast.BoolOp):
        pairs = zip(node.values, node.values[1:], strict=False)
        spans = [src.operator_span(src.span(a)[1], src.span(b)[0]) for a, b in pairs]
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        if all(spans):
            yield _Site("wrong_boolean", [(*s, OP_TEXT[new]) for s in spans], _set_op(new), node.lineno,
                        f"'{OP_TEXT[type(node.op)]}' -> '{OP_TEXT[new]}'", src.span(node))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and parent is not None:
        start, end = src.span(node)
        inner = src.text[slice(*src.paren_span(node.operand))]

        def drop_not(n: ast.AST, p: dict) -> None:
            _replace_child(p[n], n, n.operand)
        yield _Site("remove_not", [(start, end, inner)], drop_not, node.lineno, "'not' removed")
    if isinstance(node, ast.Constant) and not isinstance(parent, ast.JoinedStr):
        yield from _constant_sites(node, src)
    if isinstance(node, ast.If | ast.While | ast.IfExp):
        test = node.test
        if not (isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)):
            start, end = src.span(test)
            text = src.text[start:end]
            wrapped = text if isinstance(test, (*ATOMS, ast.Compare)) else f"({text})"

            def negate(n: ast.AST, _p: dict) -> None:
                n.test = ast.UnaryOp(op=ast.Not(), operand=n.test)
            yield _Site("negate_condition", [(start, end, f"not {wrapped}")], negate, node.lineno,
                        "condition negated")
    if isinstance(node, ast.stmt) and parent is not None:
        yield from _statement_sites(node, src, parents)
    if isinstance(node, ast.Call) and len(node.args) == 2 and not node.keywords \
            and not any(isinstance(a, ast.Starred) for a in node.args):
        yield from _swap_site("swap_arguments", node, node.args[0], node.args[1], src,
                              lambda n, _p: n.args.reverse())


def setattr_pair(node: ast.AST, a: str, b: str) -> None:
    left, right = getattr(node, a), getattr(node, b)
    setattr(node, a, right)
    setattr(node, b, left)


def _swap_site(operator: str, node: ast.AST, left: ast.AST, right: ast.AST, src: _Source,
               change: Callable[[ast.AST, dict], None]) -> Iterator[_Site]:
    left_span, right_span = src.paren_span(left), src.paren_span(right)
    left_text, right_text = src.text[slice(*left_span)], src.text[slice(*right_span)]
    if ast.dump(left) == ast.dump(right):
        return

    def moved(n: ast.AST, text: str, span: tuple[int, int]) -> str:
        had_parens = span != src.span(n)
        return text if had_parens or isinstance(n, ATOMS) else f"({text})"
    edits = [(*left_span, moved(right, right_text, right_span)), (*right_span, moved(left, left_text, left_span))]
    yield _Site(operator, edits, change, node.lineno, f"'{left_text}' <-> '{right_text}'")


def _constant_sites(node: ast.Constant, src: _Source) -> Iterator[_Site]:
    start, end = src.span(node)
    value = node.value

    def set_value(new: object) -> Callable[[ast.AST, dict], None]:
        def change(n: ast.AST, _p: dict) -> None:
            n.value = new
        return change
    if isinstance(value, bool):
        yield _Site("wrong_constant", [(start, end, repr(not value))], set_value(not value), node.lineno,
                    f"{value} -> {not value}")
    elif isinstance(value, int) and src.text[start:end].isdigit():
        for new in (value + 1, value - 1):
            if new >= 0:
                yield _Site("off_by_one", [(start, end, str(new))], set_value(new), node.lineno, f"{value} -> {new}")
    elif isinstance(value, str) and src.text[start:end] in (repr(value), f'"{value}"'):
        new = single_char_swap(value)
        if new is not None:
            literal = f'"{new}"' if src.text[start] == '"' and '"' not in new else repr(new)
            yield _Site("wrong_constant", [(start, end, literal)], set_value(new), node.lineno,
                        f"{value!r} -> {new!r}")


def _statement_sites(node: ast.stmt, src: _Source, parents: dict[ast.AST, ast.AST]) -> Iterator[_Site]:
    siblings = next((value for _f, value in ast.iter_fields(parents[node])
                     if isinstance(value, list) and any(item is node for item in value)), [])
    lines = src.whole_lines(node)
    if lines is None or len(siblings) < 2 or isinstance(parents[node], ast.Module | ast.ClassDef):
        return
    is_guard = isinstance(node, ast.If) and not node.orelse and isinstance(node.body[-1], GUARD_EXITS)
    is_plain = isinstance(node, REMOVABLE_STATEMENTS) and not (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    if is_guard or is_plain:
        first_line = src.lines[node.lineno - 1].strip()
        yield _Site("remove_guard" if is_guard else "remove_statement", [(*lines, "")], _remove_statement,
                    node.lineno, f"removed '{first_line}'")


def python_mutants(source: str, filename: str = "<source>") -> tuple[list[Mutant], list[Mutant]]:
    """All single-site mutants of ``source``: (rendered mutants, render mismatches — a bug here, reported).

    The render check compares the top-level statement holding the site (all edits fall inside it; the text
    around it is byte-identical): dumping whole modules per mutant took 42 s over the 40-program corpus."""
    tree = ast.parse(source, filename=filename)
    src = _Source(source)
    parents = _parents(tree)
    skip = _docstrings(tree)
    good: list[Mutant] = []
    bad: list[Mutant] = []
    for top, statement in enumerate(tree.body):
        for index, node in enumerate(ast.walk(statement)):
            for site in _sites(node, src, parents, skip):
                expected = ast.parse(source).body[top]  # a fresh identical copy, faster than copy.deepcopy
                target = next(itertools.islice(ast.walk(expected), index, None))
                site.change_tree(target, _parents(expected))
                attempts = [site.edits]
                if site.wrap is not None:  # e.g. '(a - b) - c * 2' with '*' -> '+' must become '... - (c + 2)'
                    w0, w1 = site.wrap
                    attempts.append([*site.edits, (w0, w0, "("), (w1, w1, ")")])
                for edits in attempts:
                    text = _apply(source, edits)
                    if _parses_to(text, top, len(tree.body), expected):
                        good.append(Mutant(site.operator, text, site.line, f"line {site.line}: {site.description}"))
                        break
                else:
                    bad.append(Mutant(site.operator, text, site.line, f"line {site.line}: {site.description}"))
    return good, bad


def _apply(source: str, edits: list[Edit]) -> str:
    """Apply edits right to left (an insertion at a span's end goes after a replacement of that span)."""
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        source = source[:start] + new + source[end:]
    return source


def _parses_to(text: str, top: int, count: int, expected: ast.stmt) -> bool:
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return False
    return len(body) == count and ast.dump(body[top]) == ast.dump(expected)
