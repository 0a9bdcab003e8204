"""The writeup's language chain (§11 Step 7) on the tiny GPT-OSS, one script after the other as a user runs them:

    16_generate_mutations.py -> 15_generate_trajectories.py -> 14_train_core_agent.py --config configs/core_agent.yaml
    -> 17_ipo_preference.py --config configs/ipo.yaml (on the generated pairs) -> 18_grpo_rl.py --config
    configs/grpo.yaml -> eval_coding_agent.py --config configs/<language>_eval.yaml

Here for Rust (Python's 16, 15, 18 and evaluation run in tests/test_trajectories.py, test_grpo.py and the demo's
end-to-end test). Sizes are the smallest that still exercise each phase's own checks: one train task (1 trajectory
and 1 IPO pair whose rejected patch really fails), 3 agent-SFT steps and 2 GRPO steps (the LoRA-update check needs
two optimizer steps with a non-zero learning rate), one held-out task; every test run goes through the sandbox.
Measured on the 2-core box (2026-11-28): 122 s at load ~2, 166 s beside another test run (with 17: 240 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _run(repo_root: Path, cwd: Path, script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root)}
    proc = subprocess.run([sys.executable, str(repo_root / "scripts" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_rust_chain_16_15_14_18_eval(tiny_model_dir, repo_root, tmp_path):
    language = "rust"
    if shutil.which("cargo") is None:
        pytest.fail("cargo is not on PATH: the Rust chain needs it (the CI and dev machines have it)")
    configs = repo_root / "configs"
    run = lambda script, *args: _run(repo_root, tmp_path, script, *args)  # noqa: E731

    # 16: two seed programs, one of them held out (the split is by program)
    run("16_generate_mutations.py", "--language", language, "--programs", "2", "--max-per-program", "2",
        "--heldout-fraction", "0.5", "--output-dir", f"data/{language}/grpo")
    tasks = [json.loads(line) for line in (tmp_path / f"data/{language}/grpo/tasks.jsonl").read_text().splitlines()]
    heldout = (tmp_path / f"data/{language}/grpo/heldout.jsonl").read_text().splitlines()
    assert tasks and heldout and {t["source"] for t in tasks}.isdisjoint({json.loads(h)["source"] for h in heldout})

    # 15: the first train task -> one trajectory and one pair (the rejected side: a sibling mutant's patch)
    out = run("15_generate_trajectories.py", "--language", language, "--max-tasks", "1")
    assert "agent_traj 1, preference 1" in out, out
    pairs = json.loads((tmp_path / f"data/{language}/trajectory_report.json").read_text())
    assert pairs["categories"]["preference"]["rows"] == 1

    # 14 with the language config: its data path is data/rust/agent_traj/train; Python's is passed
    run("14_train_core_agent.py", "--config", str(configs / "core_agent.yaml"), "--base_model", str(tiny_model_dir),
        "--train_data_path", f"data/{language}/agent_traj/train", "--output_dir", "checkpoints/agent_sft",
        "--max_steps", "3", "--gradient_accumulation_steps", "1", "--max_seq_length", "2048", "--save_steps", "10")
    sft = json.loads((tmp_path / "checkpoints/agent_sft/final/phase_metrics.json").read_text())
    assert sft["global_step"] == 3 and sft["lora_update_check"]["passed"]

    # 17 is the one step left out: on one Rust pair (2 x ~1,800 tokens scored against the 201K vocabulary) it took
    # ~100 s of this test's 240 s here and executes nothing language-specific; the README records the whole chain
    # with 17 for Rust and Python. The pair is checked to load the way 17 loads it; GRPO starts from agent SFT.
    from pipeline_lib.ipo import load_preference_dataset

    assert len(load_preference_dataset(tmp_path / f"data/{language}/preference/train")) == 1
    policy = "checkpoints/agent_sft/final"

    # 18: GRPO on the task file with sandboxed rewards (the random model earns 0: TRL's entropy bonus moves it)
    run("18_grpo_rl.py", "--config", str(configs / "grpo.yaml"), "--language", language,
        "--checkpoint", policy, "--output_dir", "checkpoints/agent_sft_grpo",
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--max_steps", "2",
        "--max_completion_length", "16", "--entropy_coef", "0.01")
    grpo = json.loads((tmp_path / "checkpoints/agent_sft_grpo/final/phase_metrics.json").read_text())
    assert grpo["global_step"] == 2 and grpo["language"] == language and grpo["sandbox"]["available"]
    assert grpo["reward_accuracy_steps"] == 2 and grpo["lora_update_check"]["passed"]
    assert grpo["policy_adapter"] == policy

    # eval with the language's config: the Phase 4 adapter on the held-out tasks, scored in the sandbox
    out = run("eval_coding_agent.py", "--config", str(configs / f"{language}_eval.yaml"), "--skip_tool_calls",
              "--max_tasks", "1", "--max_new_tokens", "16")
    report = json.loads((tmp_path / "logs/eval/grpo.json").read_text())
    assert report["adapter"] == "checkpoints/agent_sft_grpo/final" and report["language"] == language
    assert report["tasks"]["n"] == 1 and 0.0 <= report["metrics"]["pass_at_1"] <= 1.0
    assert out.strip().splitlines()[-1].startswith("eval grpo: pass_at_1 ")
