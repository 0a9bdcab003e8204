"""Seed corpora: small working programs with tests, one folder per language (layout in README "Mutation tasks").

    python/      <name>.py + test_<name>.py per program (stdlib unittest, no third-party imports)
    rust/        one offline crate: Cargo.toml (no dependencies) + src/lib.rs + src/<name>.rs per program, each
                 module self-contained with its tests in a trailing ``#[cfg(test)] mod tests``

A task is the smallest folder that runs one program's tests: for Rust that is Cargo.toml, a ``src/lib.rs`` holding
only ``pub mod <name>;`` and ``src/<name>.rs`` (compiles in about 0.6 s instead of the whole crate).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_CORPUS = REPO_ROOT / "data" / "seed_corpus"
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
# libtest single-threaded: the tests of one module take milliseconds, and one thread makes the order of the
# failure blocks in the output fixed (with the default thread pool it follows which test finished first, so the
# same mutant gave different task rows and trajectories on every run).
RUST_TEST_COMMAND = ["cargo", "test", "--offline", "-q", "--", "--test-threads=1"]
CORPUS_LAYOUT = {
    "python": "<DIR>/<name>.py with <DIR>/test_<name>.py beside it (stdlib unittest; run as "
              "'python -m unittest test_<name>' in a folder holding just those two files)",
    "rust": "<DIR>/Cargo.toml (one crate, no [dependencies]) and <DIR>/src/<name>.rs per program, each with its "
            "tests in a '#[cfg(test)] mod tests' at the end; modules must not use each other",
}


class CorpusError(ValueError):
    """A seed corpus that does not follow the layout; the message names the file."""


@dataclass(frozen=True)
class SeedProgram:
    """One seed program: the whole task folder (original, passing) and the file that gets mutated."""

    name: str
    files: dict[str, str]
    target: str
    test_command: list[str]
    origin: str  # the corpus file it was read from, for messages


def default_source(language: str) -> Path:
    return SEED_CORPUS / language


def load_corpus(language: str, root: str | Path) -> list[SeedProgram]:
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder does not exist (expected {CORPUS_LAYOUT.get(language, '?')})")
    loaders = {"python": load_python_corpus, "rust": load_rust_corpus}
    if language not in loaders:
        raise CorpusError(f"no seed-corpus loader for language {language!r}")
    programs = loaders[language](root)
    if not programs:
        raise CorpusError(f"{root}: no programs found (expected {CORPUS_LAYOUT[language]})")
    return programs


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text ({exc})") from exc


def load_python_corpus(root: Path) -> list[SeedProgram]:
    programs = []
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("test_") or path.name == "__init__.py":
            continue
        name = path.stem
        if not NAME_RE.fullmatch(name):
            raise CorpusError(f"{path}: program names must match {NAME_RE.pattern} (a module name)")
        test_path = root / f"test_{name}.py"
        if not test_path.is_file():
            raise CorpusError(f"{path}: no test file {test_path.name} beside it ({CORPUS_LAYOUT['python']})")
        files = {path.name: _read(path), test_path.name: _read(test_path)}
        for file_name, text in files.items():
            try:
                ast.parse(text, filename=str(root / file_name))
            except SyntaxError as exc:
                raise CorpusError(f"{root / file_name}:{exc.lineno}: does not parse: {exc.msg}") from exc
        programs.append(SeedProgram(name, files, path.name, ["python", "-m", "unittest", "-q", f"test_{name}"],
                                    str(path)))
    orphans = [p for p in root.glob("test_*.py") if not (root / f"{p.stem[5:]}.py").is_file()]
    if orphans:
        raise CorpusError(f"{orphans[0]}: test file without its program {orphans[0].name[5:]}")
    return programs


def _toml_tables(text: str) -> dict[str, list[str]]:
    """Table name -> its non-empty lines. Enough to check a Cargo.toml's tables (tomllib needs Python 3.11; the
    project supports 3.10)."""
    tables: dict[str, list[str]] = {"": []}
    current = ""
    for raw in text.splitlines():
        line = raw.split("#")[0].strip()
        if line.startswith("[") and line.endswith("]"):
            current = line.strip("[]").strip()
            tables.setdefault(current, [])
        elif line:
            tables[current].append(line)
    return tables


def load_rust_corpus(root: Path) -> list[SeedProgram]:
    manifest = root / "Cargo.toml"
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: missing ({CORPUS_LAYOUT['rust']})")
    cargo_text = _read(manifest)
    tables = _toml_tables(cargo_text)
    if "package" not in tables:
        raise CorpusError(f"{manifest}: needs a [package] table")
    for table, entries in tables.items():
        if table.split(".")[0] in ("dependencies", "dev-dependencies", "build-dependencies") and entries:
            raise CorpusError(f"{manifest}: [{table}] must be empty: tasks build with 'cargo test --offline'")
        if table == "workspace":
            raise CorpusError(f"{manifest}: a workspace is not supported; use one crate")
    programs = []
    for path in sorted((root / "src").glob("*.rs")):
        if path.name in ("lib.rs", "main.rs"):
            continue
        name = path.stem
        if not NAME_RE.fullmatch(name):
            raise CorpusError(f"{path}: module names must match {NAME_RE.pattern}")
        text = _read(path)
        if "#[cfg(test)]" not in text:
            raise CorpusError(f"{path}: no '#[cfg(test)]' tests module ({CORPUS_LAYOUT['rust']})")
        files = {"Cargo.toml": cargo_text, "src/lib.rs": f"pub mod {name};\n", f"src/{name}.rs": text}
        programs.append(SeedProgram(name, files, f"src/{name}.rs", RUST_TEST_COMMAND, str(path)))
    return programs
