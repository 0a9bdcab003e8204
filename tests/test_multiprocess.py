"""Training phases under two processes (torch.distributed, gloo on CPU): Phase 1 and IPO train the same adapter as
one process with the same global batch, GRPO runs, a failing rank stops both, both ranks resume from one
checkpoint, and --gpus N launches phases 13, 14, 17 and 18 under accelerate: the data-parallel path the pipeline's
--gpus N uses on GPUs, checked where CI can run it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from sft_fixtures import mixed_texts, write_text_dataset
from test_grpo import policy_adapter, task, task_file, write_tasks  # noqa: F401  (fixtures)
from test_ipo import preference_dir, sft_adapter_dir  # noqa: F401  (fixtures)

from pipeline_lib import phases

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "13_train_lang_adapter.py"
# Measured 2026-11-28 on the tiny model (3 steps, r8): 2 processes vs 1 differ by at most 2.2e-8 (reduction order);
# rank 0 alone (its half of each global batch, no gradient sync) differs by 5.2e-4.
TOLERANCE = 1e-6
IPO_TOLERANCE = 2e-5
FSDP2_TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: Path, args: list[str], *, processes: int, env: dict | None = None,
           timeout: int = 900) -> subprocess.CompletedProcess:
    """``processes`` > 1: torchrun (what accelerate launch runs under it) with gloo on CPU."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                     "--master_port", str(free_port())]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run([*launcher, str(script), *args], env=env, capture_output=True, text=True, timeout=timeout)


def train(tiny_model_dir: Path, data: Path, out: Path, *, processes: int, batch: int, backend: str = "hf") -> dict:
    args = ["--model_name_or_path", str(tiny_model_dir), "--train_data_path", str(data), "--max_steps", "3",
            "--num_train_epochs", "1", "--gradient_accumulation_steps", "1", "--max_seq_length", "128",
            "--save_steps", "3", "--lora_r", "8", "--logging_steps", "1", "--backend", backend, "--report_to", "none",
            "--seed", "7", "--per_device_train_batch_size", str(batch), "--output_dir", str(out)]
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                     "--master_port", str(free_port())]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([*launcher, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"adapter": load_file(out / "final" / "adapter_model.safetensors"),
            "metrics": json.loads((out / "final" / "phase_metrics.json").read_text()), "log": result.stdout}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tiny_model_dir, tmp_path):
    data = write_text_dataset(tmp_path / "train", mixed_texts(16))
    one = train(tiny_model_dir, data, tmp_path / "one", processes=1, batch=2)
    two = train(tiny_model_dir, data, tmp_path / "two", processes=2, batch=1)
    assert two["metrics"]["world_size"] == 2 and one["metrics"]["world_size"] == 1
    assert two["metrics"]["global_step"] == 3 and two["metrics"]["lora_update_check"]["passed"]
    assert max_diff(one["adapter"], two["adapter"]) <= TOLERANCE
    # Negative control: rank 0's rows alone (what each rank would train without the gradient all-reduce).
    alone = train(tiny_model_dir, data, tmp_path / "alone", processes=1, batch=1)
    assert max_diff(one["adapter"], alone["adapter"]) > 100 * TOLERANCE


@pytest.mark.slow
def test_fast_path_under_two_processes_matches_one_process(tiny_model_dir, tmp_path):
    """`auto` trains on the fast path on CUDA (packed rows, the MXFP4 checkpoint), and --gpus N launches the phases
    data-parallel: its swapped forwards must compose with DDP's gradient all-reduce as stock PEFT does (same
    tolerance; measured 5.1e-8, rank 0's rows alone 5.2e-4). Control: rank 0's rows alone differ; and the
    fingerprint is recorded through plain PEFT."""
    data = write_text_dataset(tmp_path / "train", mixed_texts(16))
    one = train(tiny_model_dir, data, tmp_path / "one", processes=1, batch=2, backend="fast")
    two = train(tiny_model_dir, data, tmp_path / "two", processes=2, batch=1, backend="fast")
    assert one["metrics"]["backend"] == two["metrics"]["backend"] == "fast"
    assert two["metrics"]["training_path"].startswith("fast:") and two["metrics"]["lora_update_check"]["passed"]
    assert max_diff(one["adapter"], two["adapter"]) <= TOLERANCE
    alone = train(tiny_model_dir, data, tmp_path / "alone", processes=1, batch=1, backend="fast")
    assert max_diff(one["adapter"], alone["adapter"]) > 100 * TOLERANCE
    recorded = json.loads((tmp_path / "two" / "final" / "logits_fingerprint.json").read_text())
    assert (recorded["backend"], recorded["trained_by"]) == ("hf", "fast"), recorded


@pytest.mark.parametrize("name", [p.name for p in phases.TRAINED])  # 13, 14, 17, 18
def test_gpus_flag_launches_every_training_phase_data_parallel(tmp_path, name):
    """--gpus 2: phases 13, 14, 17 and 18 start under accelerate launch with the DDP config and half the
    accumulation (the balanced profile's accumulations are even: same global batch), the phase's own flags after
    the script unchanged. Control: --gpus 1 starts the plain interpreter on the same script and flags."""
    from pipeline_lib.orchestrate import RunContext, phase_command

    phase = phases.get(name)
    two = RunContext(workdir=tmp_path, model="openai/gpt-oss-20b", profile="balanced", gpus=2)
    one = RunContext(workdir=tmp_path, model="openai/gpt-oss-20b", profile="balanced")
    cmd, single = phase_command(phase, two), phase_command(phase, one)
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert cmd[4].endswith("configs/accelerate/ddp.yaml") and cmd[5:7] == ["--num_processes", "2"]
    assert cmd[7].endswith(phase.script) and single[1].endswith(phase.script)  # the control: no launcher
    accum = int(cmd[cmd.index("--gradient_accumulation_steps") + 1])
    assert accum * 2 == int(single[single.index("--gradient_accumulation_steps") + 1])
    flag = cmd.index("--gradient_accumulation_steps")
    assert cmd[8:flag] == single[2:single.index("--gradient_accumulation_steps")]
    assert phase_command(phases.MERGE, two)[1].endswith(phases.MERGE.script)  # merge stays one process


def test_gpus_flag_validated_and_shown_in_dry_run(tmp_path, repo_root):
    import shutil

    model = tmp_path / "gpt-oss-20b"
    shutil.copytree(repo_root / "configs" / "gpt-oss-20b", model)
    script = repo_root / "scripts" / "run_tui_pipeline.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    bad = subprocess.run(["bash", str(script), "--gpus", "two", "--dry-run"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "--gpus must be a positive integer; got 'two'" in bad.stdout + bad.stderr
    write_tasks(tmp_path / "w" / "data" / "python" / "grpo" / "tasks.jsonl", [task(0)])  # else GRPO is skipped
    out = subprocess.run(["bash", str(script), "--model", str(model), "--workdir", str(tmp_path / "w"), "--gpus", "2",
                          "--grpo-language", "python", "--dry-run"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # every training phase's plan line (balanced profile): tool-calling 8 x 6, agent SFT 1 x 24, IPO 2 x 16, GRPO
    # 1 x 16 (the launch commands themselves, and --gpus 1's, are checked above without bash)
    for per_gpu in ("per GPU batch 8 x accum 3, global batch 48", "per GPU batch 1 x accum 12, global batch 24",
                    "per GPU batch 2 x accum 8, global batch 32", "per GPU batch 1 x accum 8, global batch 16"):
        assert f"2 GPUs (DDP, accelerate launch): {per_gpu}" in out.stdout, out.stdout
    assert out.stdout.count("2 GPUs (DDP, accelerate launch)") == 4


def ipo(adapter: Path, pairs: Path, out: Path, *, processes: int, batch: int) -> dict:
    args = ["--checkpoint", str(adapter), "--train_data_path", str(pairs), "--per_device_train_batch_size",
            str(batch), "--gradient_accumulation_steps", "1", "--output_dir", str(out), "--beta", "0.1",
            "--max_length", "256", "--learning_rate", "1e-3", "--save_steps", "10", "--gradient_checkpointing",
            "false", "--warmup_steps", "0", "--max_steps", "2", "--seed", "7", "--report_to", "none"]
    result = launch(REPO / "scripts" / "17_ipo_preference.py", args, processes=processes)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"adapter": load_file(out / "final" / "adapter_model.safetensors"),
            "metrics": json.loads((out / "final" / "phase_metrics.json").read_text())}


@pytest.mark.slow
def test_ipo_two_processes_match_one_process(sft_adapter_dir, preference_dir, tmp_path):  # noqa: F811
    """IPO (reference log-probs precomputed per rank, then dropped) under 2 gloo processes with batch 1 each trains
    the adapter one process trains with batch 2. Control: rank 0's rows alone (batch 1, one process) differ."""
    one = ipo(sft_adapter_dir, preference_dir, tmp_path / "one", processes=1, batch=2)
    two = ipo(sft_adapter_dir, preference_dir, tmp_path / "two", processes=2, batch=1)
    assert two["metrics"]["world_size"] == 2 and one["metrics"]["world_size"] == 1
    assert two["metrics"]["global_step"] == 2 and two["metrics"]["lora_update_check"]["passed"]
    assert two["metrics"]["ref_equals_policy_at_step0"]
    # Measured 2026-11-28: 2 processes vs 1 differ by 5.1e-6 (Adam at lr 1e-3 amplifies the all-reduce's rounding
    # on random r8 factors of size ~1); the control's difference is printed below.
    assert max_diff(one["adapter"], two["adapter"]) <= IPO_TOLERANCE
    alone = ipo(sft_adapter_dir, preference_dir, tmp_path / "alone", processes=1, batch=1)
    print(f"IPO 2 vs 1 process {max_diff(one['adapter'], two['adapter']):.3g}, control (rank 0 alone) "
          f"{max_diff(one['adapter'], alone['adapter']):.3g}")
    assert max_diff(one["adapter"], alone["adapter"]) > 10 * IPO_TOLERANCE


@pytest.mark.slow
def test_failure_on_one_rank_stops_every_rank(tiny_model_dir, tmp_path):
    """Rank 1 raises before training (PIPELINE_TEST_FAIL_RANK, read only by checkpoints.train_to_max_steps) while
    rank 0 waits in the first gradient all-reduce: the launcher must end both, non-zero, with rank 1's error in the
    log, well inside the timeout (a hang would hit it). Control: the same run without the variable succeeds."""
    import time

    data = write_text_dataset(tmp_path / "train", mixed_texts(8))
    args = ["--model_name_or_path", str(tiny_model_dir), "--train_data_path", str(data), "--max_steps", "3",
            "--max_seq_length", "128", "--lora_r", "4", "--backend", "hf", "--report_to", "none",
            "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1", "--save_steps", "10"]
    t0 = time.monotonic()
    failed = launch(SCRIPT, [*args, "--output_dir", str(tmp_path / "failed")], processes=2,
                    env={"PIPELINE_TEST_FAIL_RANK": "1"}, timeout=240)
    seconds = time.monotonic() - t0
    log = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "injected failure on rank 1" in log, log[-3000:]
    assert seconds < 200, f"took {seconds:.0f} s: the surviving rank hung until the launcher's timeout"
    assert not (tmp_path / "failed" / "final").exists()
    # Control, and the resume every rank makes: the same run without the variable succeeds (3 steps, checkpoint-3),
    # and a rerun to 4 steps resumes from it on both ranks (their optimizer state loads with map_location cpu:0 on
    # gloo: checkpoints.load_indexed_cpu_locations). 3 steps, not 2: the LoRA-update check needs lora_A to move,
    # which it does only once lora_B (zero at init) has.
    ok = launch(SCRIPT, [*args, "--output_dir", str(tmp_path / "ok"), "--save_steps", "3"], processes=2, timeout=240)
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-3000:]
    resumed = launch(SCRIPT, [*args, "--output_dir", str(tmp_path / "ok"), "--max_steps", "4",
                              "--resume_from_checkpoint", "auto"], processes=2, timeout=240)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    metrics = json.loads((tmp_path / "ok" / "final" / "phase_metrics.json").read_text())
    assert (metrics["resumed_from_step"], metrics["global_step"], metrics["world_size"]) == (3, 4, 2), metrics


def test_optimizer_state_loads_with_an_indexed_cpu_location(tmp_path):
    """torch.load(map_location=cpu:0) - what a resumed gloo run asks for - fails in torch itself (the control, in a
    fresh interpreter) and works once checkpoints.load_indexed_cpu_locations has run."""
    code = ("import sys, torch\n"
            "torch.save({'exp_avg': torch.ones(3)}, sys.argv[1])\n"
            "load = lambda: torch.load(sys.argv[1], map_location=torch.device('cpu', 0), weights_only=True)\n"
            "try:\n    load()\nexcept RuntimeError as e:\n    print('control:', e)\n"
            "from pipeline_lib.checkpoints import load_indexed_cpu_locations\n"
            "load_indexed_cpu_locations()\nprint('loaded', load()['exp_avg'].tolist())\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "optimizer.pt")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "control: don't know how to restore data location" in out.stdout and "loaded [1.0, 1.0, 1.0]" in out.stdout


@pytest.mark.slow
def test_grpo_runs_under_two_processes(policy_adapter, task_file, tmp_path):  # noqa: F811
    """GRPO (generation, sandboxed rewards, update) under 2 gloo processes with 1 prompt each: one group of 2
    generations spans both ranks (TRL gathers the rewards before the advantages), rank 0 alone writes final/."""
    out = tmp_path / "grpo"
    args = ["--checkpoint", str(policy_adapter), "--task_source", task_file, "--language", "python",
            "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1", "--output_dir", str(out),
            "--max_completion_length", "16", "--entropy_coef", "0.01", "--save_steps", "10", "--reward_workers", "1",
            "--max_steps", "2", "--seed", "7"]
    result = launch(REPO / "scripts" / "18_grpo_rl.py", args, processes=2)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    metrics = json.loads((out / "final" / "phase_metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2
    # the group size is global: 1 prompt per rank x 2 ranks; the config caps 8 at what a step holds
    assert metrics["num_generations"] == 2
    assert metrics["lora_update_check"]["passed"] and metrics["learning_signal"], metrics["lora_update_check"]
    assert result.stdout.count("GRPO done: 2 steps") == 2  # both ranks reached the end (rank 0 wrote, 1 waited)


@pytest.mark.slow
def test_fsdp2_sharded_lora_on_experts_matches_one_process(tiny_model_dir, tmp_path):
    """configs/accelerate/fsdp2.yaml's sharding (fully_shard per GptOssDecoderLayer, then the root; torch directly,
    as accelerate has no FSDP on CPU) composes with PEFT LoRA on the experts' 3-D parameters: 2 gloo ranks, one row
    each, train the adapter one process trains on both rows. Control: one process on rank 0's row alone."""
    worker = REPO / "tests" / "fsdp2_lora_worker.py"
    out = {name: tmp_path / f"{name}.safetensors" for name in ("two", "one", "alone")}
    for name, processes, extra in (("two", 2, []), ("one", 1, []), ("alone", 1, ["--rows", "0"])):
        result = launch(worker, [str(tiny_model_dir), str(out[name]), *extra], processes=processes, timeout=300)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    two, one, alone = (load_file(out[n]) for n in ("two", "one", "alone"))
    # per layer: A and B of q/k/v/o (8) and of both expert tensors (4); the tiny model has 2 layers
    assert sum("experts" in k for k in two) == 8 and len(two) == 24
    from safetensors import safe_open

    with safe_open(out["two"], "pt") as f:
        assert int(f.metadata()["sharded_params"]) > 0  # the 2-rank run really held DTensor shards
    # Measured 2026-11-28: 4.5e-7 (2 AdamW steps at lr 1e-3, fp32); rank 0's row alone differs by 4.0e-3.
    assert max_diff(one, two) <= FSDP2_TOLERANCE
    assert max_diff(one, alone) > 100 * FSDP2_TOLERANCE
