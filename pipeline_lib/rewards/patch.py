"""A small, strict unified-diff applier for one file.

    new_text = apply_unified_diff(diff, {"clamp.py": old_text}, only="clamp.py")["clamp.py"]

Written by hand instead of calling ``patch``/``git apply`` because a reward needs: no fuzz (GNU patch ignores up to
2 context lines by default and would reward a diff that does not match the file), no other file touched (``patch``
follows the paths in the diff: it can create, delete or rename anything relative to its cwd, and leaves .orig/.rej
files), a reason string for every rejection, and no dependency on a binary that slim images lack.

Rules (``PatchError`` names the hunk and the reason otherwise):
- ``---``/``+++`` headers are required; ``a/``/``b/`` prefixes and a tab + timestamp are stripped; ``diff --git``,
  ``index`` and other lines before the first header are ignored. Every file must be ``only``; /dev/null (create or
  delete) and renames are rejected.
- ``@@ -a,b +c,d @@`` counts must match the hunk body exactly (a missing count means 1). A body line is ``' '``
  context, ``-`` removed, ``+`` added, or ``\\ No newline at end of file``; an empty line is read as an empty context
  line (editors and models drop that one space).
- Context and removed lines must equal the file's lines exactly. A hunk is tried at its stated line first (shifted
  by what earlier hunks added/removed), then anywhere after the previous hunk; it must match exactly one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
NO_NEWLINE = "\\ No newline at end of file"


class PatchError(ValueError):
    """The diff cannot be parsed or does not apply; the message says where and why."""


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" " | "-" | "+", text without newline)
    new_ends_without_newline: bool = False

    @property
    def old_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "+"]

    @property
    def new_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "-"]


@dataclass
class FilePatch:
    path: str
    hunks: list[Hunk]


def _clean_path(raw: str) -> str:
    path = raw.split("\t", 1)[0].strip()
    if path.startswith('"') and path.endswith('"'):
        path = path[1:-1]
    if path != "/dev/null" and path[:2] in ("a/", "b/"):
        path = path[2:]
    return path


def parse_unified_diff(text: str) -> list[FilePatch]:
    lines = text.splitlines()
    patches: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("--- "):
            if line.startswith(("@@", "+++ ")) and not patches:
                raise PatchError(f"line {i + 1}: {line[:40]!r} before any '--- file' header")
            if patches and line.strip() and not line.startswith(("diff ", "index ", "new file", "deleted file",
                                                                  "old mode", "new mode", "similarity", "rename")):
                raise PatchError(f"line {i + 1}: unexpected {line[:60]!r} after a hunk")
            i += 1
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
            raise PatchError(f"line {i + 1}: '---' header not followed by '+++'")
        old, new = _clean_path(line[4:]), _clean_path(lines[i + 1][4:])
        if "/dev/null" in (old, new):
            raise PatchError(f"creating or deleting a file ({old} -> {new}) is not allowed")
        if old != new:
            raise PatchError(f"renames are not allowed ({old} -> {new})")
        i += 2
        hunks: list[Hunk] = []
        while i < len(lines) and lines[i].startswith("@@"):
            hunk, i = _parse_hunk(lines, i, len(hunks) + 1)
            hunks.append(hunk)
        if not hunks:
            raise PatchError(f"file {new}: no '@@' hunk after its headers")
        patches.append(FilePatch(new, hunks))
    if not patches:
        raise PatchError("no '--- file' / '+++ file' headers: not a unified diff")
    return patches


def _parse_hunk(lines: list[str], i: int, number: int) -> tuple[Hunk, int]:
    match = _HUNK.match(lines[i])
    if not match:
        raise PatchError(f"hunk {number}: malformed header {lines[i][:60]!r}")
    a, b, c, d = match.groups()
    hunk = Hunk(int(a), 1 if b is None else int(b), int(c), 1 if d is None else int(d))
    i += 1
    old_seen = new_seen = 0
    while old_seen < hunk.old_count or new_seen < hunk.new_count:
        if i >= len(lines) or lines[i].startswith("@@"):  # a body line never starts with '@@'
            raise PatchError(f"hunk {number}: header says -{hunk.old_start},{hunk.old_count} "
                             f"+{hunk.new_start},{hunk.new_count} but the body has {old_seen} old / {new_seen} new "
                             "lines")
        line = lines[i]
        tag, text = (" ", "") if line == "" else (line[0], line[1:])
        if tag == "\\":
            i += 1
            continue
        if tag not in " -+":
            raise PatchError(f"hunk {number}: line {line[:60]!r} starts with neither ' ', '-' nor '+'")
        hunk.lines.append((tag, text))
        old_seen += tag != "+"
        new_seen += tag != "-"
        i += 1
    while i < len(lines) and lines[i].startswith("\\"):
        if hunk.lines and hunk.lines[-1][0] != "-":
            hunk.new_ends_without_newline = True
        i += 1
    if old_seen != hunk.old_count or new_seen != hunk.new_count:
        raise PatchError(f"hunk {number}: body has more lines than its header counts")
    return hunk, i


def apply_file_patch(original: str, patch: FilePatch) -> str:
    """Apply every hunk of ``patch`` to ``original``; exact context, no fuzz."""
    lines = original.splitlines()
    ends_with_newline = original.endswith("\n") or not original
    out: list[str] = []
    pos = 0  # next unconsumed line of ``lines``
    for number, hunk in enumerate(patch.hunks, 1):
        old = hunk.old_lines
        stated = max(hunk.old_start - 1, 0) if hunk.old_count else hunk.old_start
        if not old:
            if stated < pos or stated > len(lines):
                raise PatchError(f"hunk {number}: insertion point {hunk.old_start} is outside the file")
            at = stated
        elif stated >= pos and lines[stated:stated + len(old)] == old:
            at = stated
        else:
            found = [k for k in range(pos, len(lines) - len(old) + 1) if lines[k:k + len(old)] == old]
            if not found:
                raise PatchError(f"hunk {number} (-{hunk.old_start},{hunk.old_count}) does not match the file: "
                                 f"{_first_mismatch(lines, stated, old)}")
            if len(found) > 1:
                raise PatchError(f"hunk {number} matches {len(found)} places (lines {[k + 1 for k in found[:5]]})")
            at = found[0]
        out.extend(lines[pos:at])
        out.extend(hunk.new_lines)
        pos = at + len(old)
        if hunk.new_ends_without_newline:
            ends_with_newline = False
    out.extend(lines[pos:])
    text = "\n".join(out)
    return text + "\n" if ends_with_newline and out else text


def _first_mismatch(lines: list[str], at: int, old: list[str]) -> str:
    for k, expected in enumerate(old):
        actual = lines[at + k] if 0 <= at + k < len(lines) else "<end of file>"
        if actual != expected:
            return f"line {at + k + 1} is {actual[:60]!r}, the hunk expects {expected[:60]!r}"
    return "the hunk runs past the end of the file"


def apply_unified_diff(diff: str, files: dict[str, str], only: str) -> dict[str, str]:
    """Return a copy of ``files`` with ``diff`` applied; every file in the diff must be ``only``."""
    patches = parse_unified_diff(diff)
    out = dict(files)
    for patch in patches:
        if patch.path != only:
            raise PatchError(f"the patch edits {patch.path!r}, not the file to fix {only!r}")
        if only not in out:
            raise PatchError(f"{only!r} is not in the task")
        out[only] = apply_file_patch(out[only], patch)
    return out
