"""Quality gates (writeup §8): loss/merge/export checks from saved outputs, the CLI's exit status and last line, and
the atomic, locked merge of results into quality_gates.json."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from pipeline_lib import gates
from pipeline_lib.gates import check_gate, load_gate_specs, main, read_gates, record_gate, safetensors_problem


def write_run(run_dir: Path, losses: list[float], where: str = "final") -> Path:
    out = run_dir / where
    out.mkdir(parents=True, exist_ok=True)
    history = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
    (out / "trainer_state.json").write_text(json.dumps({"global_step": len(losses), "log_history": history}))
    return run_dir


def write_merged(hf: Path, *, n: int = 1000, params: int | None = None, smoke: bool = True, logits: bool | None = True,
                 passed: bool = True) -> Path:
    hf.mkdir(parents=True, exist_ok=True)
    (hf / "config.json").write_text(json.dumps({"dtype": "float32"}))
    save_file({"w": np.ones(n, dtype=np.float32)}, str(hf / "model.safetensors"))
    checks = {"smoke_test": {"passed": smoke}, "size": {"passed": True, "parameters": params or n}}
    if logits is not None:
        checks["merged_equals_adapter"] = {"passed": logits}
        checks["merged_weights_hold_delta"] = {"passed": logits}
    (hf / "manifest.json").write_text(json.dumps({"passed": passed, "saved_dtype": "float32", "checks": checks}))
    return hf


def test_loss_gate_averages_last_10_and_fails_above_threshold(tmp_path):
    spec = load_gate_specs("default")["tool_calling_sft"]
    # 20 steps: the first 10 at 9.0 must not count; the last 10 average 1.45.
    good = check_gate(spec, write_run(tmp_path / "good", [9.0] * 10 + [1.4, 1.5] * 5))
    assert good.passed and good.value == pytest.approx(1.45) and good.fields["loss"] == "1.450"
    bad = check_gate(spec, write_run(tmp_path / "bad", [1.0] * 10 + [2.5] * 10))  # negative control
    assert not bad.passed and bad.hard_failure and bad.value == pytest.approx(2.5)
    missing = check_gate(spec, tmp_path / "nothing")
    assert not missing.passed and missing.value is None


def test_loss_gate_reads_latest_checkpoint_when_no_final(tmp_path):
    spec = load_gate_specs("default")["agent_sft"]
    run = write_run(tmp_path / "run", [5.0] * 10, "checkpoint-10")
    write_run(run, [1.0] * 20, "checkpoint-20")
    assert check_gate(spec, run).value == pytest.approx(1.0)


def test_soft_gates_never_hard_fail(tmp_path):
    specs = load_gate_specs("default")
    ipo = check_gate(specs["ipo"], tmp_path / "empty")
    assert not ipo.passed and not ipo.hard_failure
    run = tmp_path / "grpo"
    (run / "final").mkdir(parents=True)
    (run / "final" / "phase_metrics.json").write_text(json.dumps({"reward_accuracy": 0.4}))
    grpo = check_gate(specs["grpo"], run)
    assert grpo.value == pytest.approx(0.4) and not grpo.passed and not grpo.hard_failure
    (run / "final" / "phase_metrics.json").write_text(json.dumps({"reward_accuracy": 0.7}))
    assert check_gate(specs["grpo"], run).passed


def test_reward_gate_falls_back_to_last_10_logged_rewards(tmp_path):
    """No phase_metrics.json: the GRPO gate averages the last 10 `reward` entries of trainer_state.json."""
    spec = load_gate_specs("default")["grpo"]  # reward_accuracy > 0.55, SOFT

    def write_rewards(run: Path, rewards: list[float]) -> Path:
        (run / "final").mkdir(parents=True)
        history = [{"step": i + 1, "reward": v, "loss": 0.1} for i, v in enumerate(rewards)]
        (run / "final" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
        return run

    # 15 steps: the first 5 at 0.0 must not count; the last 10 average 0.65.
    good = check_gate(spec, write_rewards(tmp_path / "good", [0.0] * 5 + [0.6, 0.7] * 5))
    assert good.passed and good.value == pytest.approx(0.65) and good.fields["reward_accuracy"] == "0.650"
    # Negative control: the last 10 average 0.5 (a mean over all 15 would be 0.6 and pass).
    bad = check_gate(spec, write_rewards(tmp_path / "bad", [0.8] * 5 + [0.5] * 10))
    assert not bad.passed and not bad.hard_failure and bad.value == pytest.approx(0.5)
    losses_only = check_gate(spec, write_run(tmp_path / "no_reward", [1.0] * 10))
    assert not losses_only.passed and losses_only.value is None

def test_merge_gate_passes_complete_merge_and_catches_each_failure(tmp_path):
    spec = load_gate_specs("default")["merge"]
    ok = check_gate(spec, write_merged(tmp_path / "ok"))
    assert ok.passed, ok.detail
    assert ok.fields["smoke_test"] == "true" and ok.fields["logits_equivalence"] == "true"
    # Negative controls, one defect each.
    cases = {
        "undersized": write_merged(tmp_path / "small", params=2000),  # config says 2000 params, file holds 1000
        "smoke": write_merged(tmp_path / "smoke", smoke=False),
        "logits": write_merged(tmp_path / "logits", logits=False),
        "no_logits_check": write_merged(tmp_path / "nolog", logits=None),
        "manifest_failed": write_merged(tmp_path / "mf", passed=False),
    }
    truncated = write_merged(tmp_path / "trunc")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[:-100])
    cases["truncated"] = truncated
    for name, hf in cases.items():
        result = check_gate(spec, hf)
        assert not result.passed and result.hard_failure, name


def test_merge_size_floor_comes_from_config_params_and_dtype(tmp_path):
    """No parameter count in the manifest: the floor is computed from config.json on a meta-device model."""
    from pipeline_lib.tiny_model import tiny_gpt_oss_config

    hf = write_merged(tmp_path / "hf")
    manifest = json.loads((hf / "manifest.json").read_text())
    del manifest["checks"]["size"]["parameters"]
    (hf / "manifest.json").write_text(json.dumps(manifest))
    tiny_gpt_oss_config().save_pretrained(hf)  # 25.9M params; saved dtype float32 -> floor 0.9 x 103 MB
    result = check_gate(load_gate_specs("default")["merge"], hf)
    assert not result.passed and "size" in result.detail
    assert int(result.fields["parameters"]) > 25_000_000 and result.fields["dtype"] == "float32"


def test_safetensors_problem_detects_truncation_and_garbage(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"x": np.zeros(64, dtype=np.float32)}, str(path))
    assert safetensors_problem(path) is None
    full = path.read_bytes()
    path.write_bytes(full[:-1])
    assert "truncated" in safetensors_problem(path)
    path.write_bytes(b"garbage")
    assert safetensors_problem(path) is not None


def test_export_gate_hard_on_hf_soft_on_gguf(tmp_path):
    spec = load_gate_specs("default")["export"]

    def export(name: str, hf_ok: bool, gguf_ok: bool) -> Path:
        out = tmp_path / name
        (out / "hf").mkdir(parents=True)
        (out / "hf" / "config.json").write_text("{}")
        save_file({"w": np.ones(64, dtype=np.float32)}, str(out / "hf" / "model.safetensors"))
        manifest = {"passed": hf_ok, "hf": {"passed": hf_ok, "checks": {"merged_equals_adapter": {"passed": hf_ok}}},
                    "gguf": {"status": "ok" if gguf_ok else "error", "passed": gguf_ok}}
        (out / "manifest.json").write_text(json.dumps(manifest))
        return out

    assert check_gate(spec, export("both", True, True)).passed
    soft = check_gate(spec, export("nogguf", True, False))
    assert soft.passed and "warning" in soft.fields and soft.fields["gguf"] == "false"
    assert check_gate(spec, export("nohf", False, True)).hard_failure
    assert check_gate(spec, tmp_path / "missing").hard_failure
    # A truncated shard under a manifest that says passed: the gate re-checks the files (as the skip does).
    shard = export("truncated", True, True) / "hf" / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-40])
    cut = check_gate(spec, shard.parent.parent)
    assert cut.hard_failure and "truncated" in cut.detail


def test_cli_hard_failure_exits_1_with_gate_value_threshold_last(tmp_path, capsys):
    run = write_run(tmp_path / "run", [3.25] * 10)
    gates_file = tmp_path / "logs" / "quality_gates.json"
    rc = main(["check", "--phase", "tool_calling_sft", "--run-dir", str(run), "--gates-file", str(gates_file)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 1
    assert last.startswith("HARD GATE FAILED: tool_calling") and "3.25" in last and "<= 2.0" in last
    assert read_gates(gates_file)["tool_calling"]["passed"] == "false"
    # The same run under the tiny profile's looser threshold passes (and overwrites the entry).
    assert main(["check", "--phase", "tool_calling_sft", "--run-dir", str(run), "--gates-file", str(gates_file),
                 "--profile", "tiny"]) == 0
    entry = read_gates(gates_file)["tool_calling"]
    assert entry["passed"] == "true" and entry["loss"] == "3.250" and entry["type"] == "HARD"


def test_record_keeps_writeup_shape(tmp_path):
    gates_file = tmp_path / "quality_gates.json"
    assert main(["record", "--phase", "grpo", "--gates-file", str(gates_file), "--status", "skipped_no_tasks"]) == 0
    assert read_gates(gates_file)["grpo"]["status"] == "skipped_no_tasks"


def _record_many(args: tuple[str, int, bool]) -> None:
    path, worker, locked = args
    if not locked:  # the negative control: the same read-modify-write without the lock
        import contextlib
        import os
        import time

        gates._locked = lambda path: contextlib.nullcontext()
        # The race made certain, not likely: each unlocked writer holds what it read for 20 ms before writing, and
        # the 4 workers start together (one file per worker process, go once 4 exist). Without this, spawned
        # workers on a loaded 2-core box once started far enough apart to keep all 160 entries (CI, 2026-11-29).
        read = gates.read_gates

        def slow_read(gates_file):
            data = read(gates_file)
            time.sleep(0.02)
            return data

        gates.read_gates = slow_read
        ready = Path(path).parent / "ready"
        ready.mkdir(exist_ok=True)
        (ready / str(os.getpid())).touch()
        deadline = time.time() + 60
        while len(list(ready.iterdir())) < 4 and time.time() < deadline:
            time.sleep(0.01)
    for i in range(20):
        record_gate(path, f"k{worker}_{i}", {"passed": "true"})


def _run_pool(path: str, locked: bool) -> None:
    """4 spawned workers x 8 jobs, with a deadline. Spawned, not forked: a fork taken while a thread of the test
    process held a lock once left a child stuck inside record_gate, holding the file lock every other worker then
    waited on (a full-suite run under load hung there for 15 minutes)."""
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map_async(_record_many, [(path, w, locked) for w in range(8)]).get(timeout=180)


def test_concurrent_records_lose_nothing(tmp_path):
    """8 processes x 20 read-modify-write updates: with the lock every key survives."""
    path = str(tmp_path / "quality_gates.json")
    _run_pool(path, locked=True)
    assert len(read_gates(path)) == 160
    assert not list(tmp_path.glob(".quality_gates.json.tmp*"))


def test_unlocked_records_do_lose_updates(tmp_path):
    """Negative control for the test above: without the lock, concurrent read-modify-write drops entries."""
    path = str(tmp_path / "quality_gates.json")
    _run_pool(path, locked=False)
    assert len(read_gates(path)) < 160


def test_gate_config_validation(tmp_path):
    bad = tmp_path / "gates.yaml"
    bad.write_text("default:\n  tool_calling_sft: {metric: avg_loss_last_10, type: HARD}\n")
    with pytest.raises(ValueError, match="tool_calling_sft"):
        load_gate_specs("default", bad)
    with pytest.raises(ValueError, match="missing"):
        load_gate_specs("nonexistent")
