"""Trajectories and IPO pairs from mutation tasks: real tool results, Phase 0's format, loaders of 14 and 17."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib import trajectories
from pipeline_lib.rewards import apply_unified_diff, score_completion

REPO = Path(__file__).resolve().parents[1]
FIX = ("def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n"
       "    return x\n")
TESTS = ("import unittest\nfrom clamp import clamp\n\n\nclass T(unittest.TestCase):\n"
         "    def test_inside(self):\n        self.assertEqual(clamp(5, 0, 10), 5)\n\n"
         "    def test_below(self):\n        self.assertEqual(clamp(-3, 0, 10), 0)\n\n"
         "    def test_above(self):\n        self.assertEqual(clamp(15, 0, 10), 10)\n")
MUTANTS = {"flip_comparison": FIX.replace("x < lo", "x > lo"), "flip_upper": FIX.replace("x > hi", "x < hi"),
           "wrong_name": FIX.replace("    return x\n", "    return lo\n")}


def task(operator: str, buggy: str | None = None, fix: str = FIX, source: str = "clamp") -> dict:
    return {"id": f"python-{source}-{operator}-0", "language": "python",
            "files": {"clamp.py": buggy or MUTANTS[operator], "test_clamp.py": TESTS}, "buggy_file": "clamp.py",
            "test_command": ["python", "-m", "unittest", "-q", "test_clamp"], "reference_fix": fix,
            "operator": operator, "source": source, "split": "train", "failure": "FAILED"}


@pytest.fixture(scope="module")
def clamp_tasks() -> list[dict]:
    return [task(op) for op in MUTANTS]


@pytest.fixture(scope="module")
def outcome(clamp_tasks):
    return trajectories.build_task(clamp_tasks[0], clamp_tasks)


def test_trajectory_holds_real_tool_results(outcome, clamp_tasks):
    assert outcome.drops == []
    messages = outcome.trajectory.messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool",
                                             "assistant", "tool", "assistant"]
    assert messages[2]["content"] == MUTANTS["flip_comparison"]  # read_file = the buggy file
    failing, passing = messages[4]["content"], messages[8]["content"]
    assert "FAILED (failures=" in failing and failing.endswith("[exit status 1]")  # the real failing run
    assert "\nOK" in passing and passing.endswith("[exit status 0]")  # the real passing run
    patch = messages[5]["tool_calls"][0]["arguments"]["patch"]
    assert apply_unified_diff(patch, dict(clamp_tasks[0]["files"]), only="clamp.py")["clamp.py"] == FIX
    assert messages[6]["content"] == "Patch applied to clamp.py."
    assert "`if x > lo:` should be `if x < lo:`" in messages[5]["thinking"]
    assert outcome.trajectory.developer_instructions.startswith("You are a coding agent.")
    assert [t["name"] for t in outcome.trajectory.tools] == ["read_file", "run_tests", "apply_patch"]


def test_rejected_patch_really_fails_and_chosen_is_rewarded(outcome, clamp_tasks):
    pair = outcome.pair
    chosen_patch = pair.chosen[4]["tool_calls"][0]["arguments"]["patch"]
    rejected_patch = pair.rejected[4]["tool_calls"][0]["arguments"]["patch"]
    assert pair.chosen[:4] == pair.rejected[:4]  # same read + failing run
    assert rejected_patch != chosen_patch
    assert pair.rejected[-2]["content"].endswith("[exit status 1]")  # its real run fails
    failure = pair.chosen[3]["content"]
    good = score_completion(clamp_tasks[0], trajectories.patch_call_completion(clamp_tasks[0], failure, chosen_patch))
    bad = score_completion(clamp_tasks[0], trajectories.patch_call_completion(clamp_tasks[0], failure,
                                                                               rejected_patch))
    assert good.tests_passed and good.reward == 1.0
    assert bad.applied and not bad.tests_passed and bad.reward == 0.0


def test_bad_tasks_are_dropped_with_reasons(clamp_tasks):
    assert trajectories.build_task(task("flip_comparison", buggy=FIX.replace("x < lo", "x <= lo")),
                                   clamp_tasks).drops == ["trajectory:buggy_passes"]  # an equivalent mutant
    broken_fix = task("flip_comparison", fix=FIX.replace("return hi", "return lo"))
    assert trajectories.build_task(broken_fix, clamp_tasks).drops == ["trajectory:reference_fix_fails"]
    lonely = trajectories.build_task(task("wrong_name", source="other"), clamp_tasks)
    assert lonely.trajectory is not None and lonely.drops == ["pair:no_sibling"]


def test_written_datasets_load_in_phase_2_and_3(outcome, tmp_path, gpt_oss_tokenizer):
    from pipeline_lib.ipo import load_preference_dataset
    from pipeline_lib.sft_data import load_text_dataset

    report = trajectories.write_datasets([outcome], tmp_path, gpt_oss_tokenizer, task_file="tasks.jsonl")
    assert report["categories"]["agent_traj"]["rows"] == 1 and report["categories"]["preference"]["rows"] == 1
    agent = load_text_dataset(tmp_path / "agent_traj" / "train")  # what 14_train_core_agent.py calls
    assert "to=functions.apply_patch" in agent[0]["text"] and agent[0]["text"].endswith("<|return|>")
    pairs = load_preference_dataset(tmp_path / "preference" / "train")  # what 17_ipo_preference.py calls
    assert pairs[0]["prompt"].endswith("<|start|>assistant") and pairs[0]["chosen"] != pairs[0]["rejected"]
    saved = json.loads((tmp_path / trajectories.REPORT_NAME).read_text())
    assert saved["tasks"] == 1 and saved["drops"] == {} and "git_sha" in saved["provenance"]


@pytest.mark.slow
def test_cli_end_to_end(clamp_tasks, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in clamp_tasks))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "15_generate_trajectories.py"), "--language",
                           "python", "--task-file", str(tasks), "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("trajectories: 3 tasks -> agent_traj 3, preference 3;")
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps(clamp_tasks[0] | {"split": "heldout"}) + "\n")
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "15_generate_trajectories.py"), "--language",
                              "python", "--task-file", str(heldout), "--output-dir", str(tmp_path / "never")],
                             capture_output=True, text=True, timeout=300, cwd=REPO)
    assert refused.returncode == 2 and "held-out" in refused.stderr and not (tmp_path / "never").exists()
