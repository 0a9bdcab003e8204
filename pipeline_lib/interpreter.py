"""The first thing every phase script does: check that this interpreter has the project installed, and if not, say
which interpreter ran and the command that fixes it (instead of a ModuleNotFoundError deep in an import chain).
Standard library only, so it runs before anything that could be missing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# What every phase imports (pyproject.toml's dependencies); a phase may ask for more.
CORE_MODULES = ("yaml", "torch", "transformers", "trl", "peft", "datasets", "safetensors", "openai_harmony")


def missing_modules(modules: tuple[str, ...] = CORE_MODULES) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def fix_command() -> str:
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    if venv.is_file() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():  # not running in that venv
        return f"run it with {venv} (the repository's venv), or set PYTHON={venv} for the pipeline"
    return (f"run 'make install' in {REPO_ROOT} (builds .venv), or "
            f"'{sys.executable} -m pip install -e \"{REPO_ROOT}[gpt_oss,gguf]\"'")


def require_modules(*extra: str) -> None:
    """Exit with one clear message when a module is missing (status 2, like a usage error)."""
    missing = missing_modules(CORE_MODULES + extra)
    if missing:
        raise SystemExit(f"ERROR: {sys.executable} has no module(s) {', '.join(missing)}: {fix_command()}")
