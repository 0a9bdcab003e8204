"""The last line of a failed pipeline run names the failure and what to do, and says "rerun" only where a rerun
helps (issue 9: every failure used to end "rerun the same command to resume"). Driven through the real bash
orchestrator over the stand-in phase scripts of tests/test_orchestrator.py."""

from __future__ import annotations

import shutil

import pytest
from test_orchestrator import FAKE, calls, fake_env, run_pipeline  # noqa: F401  (fake_env is a fixture)


def last_line(result) -> str:
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # ~30-90 s on 2 busy cores: four pipeline runs, two of them stop before any phase
def test_the_last_line_says_what_to_do_and_rerun_only_where_it_helps(fake_env, tmp_path):  # noqa: F811
    # A bad input is found before any phase runs; the fix is to the input.
    typo = run_pipeline(fake_env, "--gates-config", str(tmp_path / "gatse.yaml"), timeout=120)
    assert typo.returncode == 1 and calls(fake_env) == []
    assert "--gates-config" in last_line(typo) and "gatse.yaml" in last_line(typo)
    assert "what to do: fix the command line" in last_line(typo)
    broken = tmp_path / "gates_broken.yaml"  # exists, but is not YAML: the preflight reads it
    broken.write_text("tiny:\n  tool_calling: {metric: avg_loss_last_10, op: '<=', threshold: [unclosed\n")
    bad = run_pipeline(fake_env, "--gates-config", str(broken), timeout=120)
    assert bad.returncode == 1 and calls(fake_env) == []
    assert f"--gates-config {broken}: ParserError" in last_line(bad)
    assert "what to do: fix the input named above" in last_line(bad) and "to resume" not in last_line(bad)
    # A crashed phase (out of memory, killed): rerunning resumes it, and the line says so.
    script = fake_env["scripts"] / "13_train_lang_adapter.py"
    script.write_text("import sys\nprint('planted crash')\nsys.exit(3)\n")
    crashed = run_pipeline(fake_env)
    assert crashed.returncode == 1 and [c["script"] for c in calls(fake_env)] == ["tui_data_prep.py"]
    assert last_line(crashed).startswith("ERROR: tool_calling_sft: 13_train_lang_adapter.py exited with status 3")
    assert "what to do: read " in last_line(crashed) and "rerun the same command to resume" in last_line(crashed)
    # A HARD gate fails on a saved result: a rerun would re-check the same result, so the line does not say rerun.
    shutil.copy(FAKE, script)
    gate = run_pipeline(fake_env, env={"FAKE_LOSS": "2.75"})
    assert gate.returncode == 1 and last_line(gate).startswith("HARD GATE FAILED: tool_calling avg_loss_last_10")
    assert "what to do: a rerun re-checks the same saved result" in last_line(gate)
    assert "to resume" not in last_line(gate)
