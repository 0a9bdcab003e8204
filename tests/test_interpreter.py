"""A phase script run by an interpreter without the project's packages names that interpreter and the fix, and the
orchestrator picks the repository's .venv when PYTHON is unset."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bare_python() -> str | None:
    """An interpreter without torch (the system one), or None on a machine that has torch everywhere."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and Path(candidate).exists() and subprocess.run(
                [candidate, "-c", "import torch"], capture_output=True).returncode != 0:
            return candidate
    return None


@pytest.mark.parametrize("script", ["13_train_lang_adapter.py", "14_train_core_agent.py", "17_ipo_preference.py",
                                    "19_merge_adapter.py", "tui_data_prep.py"])
def test_phase_script_without_the_packages_says_which_interpreter_and_the_fix(script):
    python = bare_python()
    if python is None:
        pytest.skip("every python on this machine has torch: no interpreter to show the message with")
    result = subprocess.run([python, str(REPO / "scripts" / script), "--help"], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ERROR: {python} has no module(s)") and "torch" in last, result.stderr[-500:]
    assert "make install" in last or ".venv" in last
    assert "Traceback" not in result.stderr
    # Control: the project's interpreter runs the same script's --help.
    ok = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-500:]


def test_pipeline_uses_repo_venv_when_python_unset_and_names_a_bad_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    python = bare_python()
    if python is not None:
        bad = subprocess.run(["bash", str(REPO / "scripts" / "run_tui_pipeline.sh"), "--dry-run", "--tiny",
                              "--workdir", str(tmp_path)], env={**env, "PYTHON": python},
                             capture_output=True, text=True, timeout=120)
        last = bad.stdout.strip().splitlines()[-1]
        assert bad.returncode == 1 and "lacks module(s)" in last and "what to do: run 'make install'" in last
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in this checkout")
    good = subprocess.run(["bash", str(REPO / "scripts" / "run_tui_pipeline.sh"), "--dry-run", "--tiny",
                           "--workdir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    assert f"python:         {REPO / '.venv' / 'bin' / 'python'}" in good.stdout
