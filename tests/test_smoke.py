"""scripts/gpu_smoke.sh's own checks and report (pipeline_lib/smoke.py), on the tiny model in the MXFP4 layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib.smoke import expert_deltas_dropped, gpu_samples, phase_windows, render, run_checks


@pytest.fixture(scope="module")
def mxfp4_model(tiny_model_dir: Path, tmp_path_factory) -> Path:
    import torch
    from transformers import GptOssForCausalLM

    from pipeline_lib.mxfp4 import save_released_layout
    from pipeline_lib.tokenizer import save_gpt_oss_tokenizer

    out = tmp_path_factory.mktemp("smoke") / "tiny-mxfp4"
    save_released_layout(GptOssForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16), out)
    save_gpt_oss_tokenizer(out)
    return out


def test_checks_pass_and_both_negative_controls_fail(mxfp4_model: Path, tmp_path: Path) -> None:
    # tests/ is on sys.path (as test_gguf.py relies on); "tests." would resolve to llama.cpp's gguf-py/tests once
    # pipeline_lib.gguf_export has put gguf-py first on sys.path (seen when test_gguf.py runs before this file)
    from test_fingerprint import _trained_like_adapter

    adapter = _trained_like_adapter(mxfp4_model, tmp_path / "final")
    result = run_checks(str(mxfp4_model), str(adapter))
    assert result["released_layout_load"]["passed"] and result["released_layout_load"]["max_abs_diff"] == 0.0
    assert result["fingerprint"]["passed"], result["fingerprint"]
    neg = result["fingerprint_negative_control"]
    assert neg["ok"] and neg["passed"] is False and "experts" in neg["zeroed"] and "lora_B" in neg["zeroed"]
    merge = result["merge_negative_control"]
    # the weight check sees the dropped experts (ratio 0) while attention merged (ratio 1)
    assert merge["ok"] and merge["ratio_by_kind"]["experts"]["max"] < 0.01, merge
    assert merge["ratio_by_kind"]["linear"]["min"] > 0.99, merge
    assert merge["logits"]["tolerance_parts"] == {"rel_tol": 1e-4}  # fp32 on CPU: no bf16 terms
    assert result["passed"]


def test_expert_deltas_dropped_is_restored() -> None:
    from peft.tuners.lora.layer import ParamWrapper

    original = ParamWrapper.merge
    with expert_deltas_dropped():
        assert ParamWrapper.merge is not original
    assert ParamWrapper.merge is original


def test_phase_windows_and_gpu_samples(tmp_path: Path) -> None:
    log = ("[2026-11-28 10:00:00] ===== START tool_calling_sft =====\n"
           "[2026-11-28 10:01:40] ===== END tool_calling_sft (ran, elapsed 1m40s) =====\n"
           "[2026-11-28 10:01:41] ===== START agent_sft =====\n"
           "[2026-11-28 10:02:00] START evaluation\n[2026-11-28 10:02:30] END evaluation (30 s)\n")
    windows = phase_windows(log)
    assert [(w["phase"], w["status"]) for w in windows] == [("tool_calling_sft", "ran"), ("agent_sft", "cut off"),
                                                            ("evaluation", "ran")]
    assert (windows[2]["end"] - windows[2]["start"]).total_seconds() == 30
    assert (windows[0]["end"] - windows[0]["start"]).total_seconds() == 100 and windows[1]["end"] is None
    csv_file = tmp_path / "mem.csv"
    csv_file.write_text("2026/11/28 10:00:30.123, 20480\nnot a row\n2026/11/28 10:02:00.000, 1024\n")
    samples = gpu_samples(csv_file)
    assert [round(gb, 1) for _, gb in samples] == [20.0, 1.0]


def test_render_names_cut_off_phases_and_failed_controls() -> None:
    report = {"phases": [{"run": "tui_pipeline_1.log", "phase": "agent_sft", "status": "cut off", "seconds": None,
                          "first_step_seconds": None, "peak_gpu_gb_torch": None, "peak_gpu_gb_nvidia_smi": 3.2}],
              "events": [{"step": "pipeline_run1", "status": "killed -9 in agent_sft", "seconds": 70}],
              "merge_checks": None, "export": {}, "checks": None,
              "kill_resume": {"phase": "agent_sft", "resumed_from_step": 2,
                              "resumed_from_checkpoint": "checkpoint-2", "global_step": 8, "max_steps": 8}}
    text = render(report)
    assert "| agent_sft | cut off | n/a |" in text and "(agent_sft): resumed from step 2" in text
    assert "killed -9 in agent_sft" in text
    json.dumps(report)


def test_verdict_on_run_l_fails_for_its_bf16_gguf_and_passes_once_that_holds(repo_root: Path) -> None:
    """Smoke run L's own report (H200, 2026-11-29): every phase ended and the kill resumed, but its BF16 GGUF failed
    against the bf16-forward reference of that version; the verdict must say so, and only that."""
    import copy

    from pipeline_lib.smoke import verdict

    report = json.loads((repo_root / "docs" / "bench" / "2026-11-29_h200_gpu_smoke_run_l.json").read_text())
    v = verdict(report)
    assert not v["passed"] and len(v["failures"]) == 1 and "BF16 GGUF did not pass" in v["failures"][0], v
    good = copy.deepcopy(report)
    good["export"]["gguf_files"]["BF16"]["passed"] = True
    assert verdict(good) == {"passed": True, "failures": [], "not_judged": v["not_judged"]}
    assert "verdict: PASS" in render({**good, "verdict": verdict(good)})
    # run N's report: the same single failure; the BF16 check's tolerance and the sensitivity behind it are shown
    # once the export records them (run N predates them: the line is absent, not invented)
    run_n = json.loads((repo_root / "docs" / "bench" / "2026-11-29_h200_gpu_smoke_run_n.json").read_text())
    assert [f for f in verdict(run_n)["failures"] if "BF16 GGUF did not pass" in f] == verdict(run_n)["failures"]
    assert "BF16 GGUF logits rel_median" not in render(run_n)
    run_n["export"]["gguf_bf16_rel_median"] = {"value": 0.17, "threshold": 0.35, "passed": True,
                                               "tolerance_parts": {"rel_tol": 0.05, "sensitivity_term": 0.35}}
    run_n["export"]["gguf_rounding_sensitivity"] = {"rel_median": 0.35}
    assert "BF16 GGUF logits rel_median 0.17 vs tolerance 0.35" in render(run_n)
    # run O's report (H200, 2026-11-29, the current defaults): the real verdict passes, its GGUF line shows the
    # tolerance made of the measured sensitivity, and the same report with its BF16 GGUF failed does not pass
    run_o = json.loads((repo_root / "docs" / "bench" / "2026-11-29_h200_gpu_smoke_run_o.json").read_text())
    assert verdict(run_o)["passed"] and run_o["verdict"]["passed"], verdict(run_o)
    assert "BF16 GGUF logits rel_median 0.03713 vs tolerance 0.253" in render(run_o)
    assert run_o["kill_resume"]["resumed_from_step"] == 2
    run_o["export"]["gguf_files"]["BF16"]["passed"] = False
    assert any("BF16 GGUF did not pass" in f for f in verdict(run_o)["failures"])
    # each part of the verdict fails on its own
    no_resume = copy.deepcopy(good)
    no_resume["kill_resume"]["resumed_from_step"] = None  # the rerun started over instead of resuming
    assert "kill -9 + rerun" in verdict(no_resume)["failures"][0]
    no_eval = copy.deepcopy(good)
    no_eval["phases"] = [p for p in no_eval["phases"] if p["phase"] != "evaluation"]
    assert "before the evaluation" in verdict(no_eval)["failures"][0]
    cut = copy.deepcopy(good)
    next(p for p in reversed(cut["phases"]) if p["phase"] == "ipo")["status"] = "cut off"
    assert verdict(cut)["failures"] == ["ipo: cut off in the last pipeline run"]
    hf = copy.deepcopy(good)
    hf["export"]["passed"] = False
    assert verdict(hf)["failures"] == ["export: the HF export did not pass"]


def test_detach_starts_once_reattaches_and_returns_the_runs_status(tmp_path: Path, repo_root: Path) -> None:
    """--detach: the run outlives the command that started it, the same command again follows the same run (never
    a second one) and, once it has ended, exits with its status. The run here is the script itself with a stand-in
    interpreter that records each call, sleeps 4 s and fails with 7, so the child ends at its first Python step."""
    import os
    import subprocess

    calls = tmp_path / "python_calls"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho call >> {calls}\nsleep 4\nexit 7\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out)}
    cmd = ["bash", str(repo_root / "scripts" / "gpu_smoke.sh"), "--cpu", "--workdir", str(tmp_path / "w"),
           "--detach"]

    first = subprocess.run([*cmd, "--wait", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 3, first.stdout + first.stderr  # still running when the command returns
    assert "started detached" in first.stdout
    assert (tmp_path / "w" / "detached" / "repo" / "pipeline_lib" / "smoke.py").is_file()  # runs from its copy

    pid = (tmp_path / "w" / "detached" / "pid").read_text()
    second = subprocess.run([*cmd, "--wait", "60"], env=env, capture_output=True, text=True, timeout=90)
    assert "attaching to the detached run" in second.stdout, second.stdout
    assert second.returncode == 7, second.stdout + second.stderr  # the run's own status, not the follower's
    ended_after = calls.read_text().count("call")

    third = subprocess.run([*cmd, "--wait", "60"], env=env, capture_output=True, text=True, timeout=90)
    assert third.returncode == 7 and "has ended (exit 7;" in third.stdout
    # one run only: the same process throughout, and nothing ran again once it had ended
    assert (tmp_path / "w" / "detached" / "pid").read_text() == pid
    assert "started detached" not in second.stdout + third.stdout
    assert calls.read_text().count("call") == ended_after >= 2


def test_wait_without_detach_is_refused(repo_root: Path) -> None:
    import subprocess

    result = subprocess.run(["bash", str(repo_root / "scripts" / "gpu_smoke.sh"), "--wait", "10", "--cpu"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--wait only applies with --detach" in result.stderr
