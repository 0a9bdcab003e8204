"""scripts/run_tui_pipeline.sh and pipeline_lib.orchestrate.

Fast tests drive the real bash orchestrator over stand-in phase scripts (tests/fakes/fake_phase.py, selected with
the test-only TUI_SCRIPTS_DIR) to pin its plumbing: skip/resume/fresh, gates, lock, token scoping, environment.
The slow tests run the REAL phase scripts end to end on the tiny GPT-OSS (one shared run, copies for variants).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from pipeline_lib.orchestrate import (
    PipelinePaths,
    checkpoint_problem,
    disk_preflight,
    find_resume_checkpoint,
    merge_state,
    model_slug,
    training_state,
)

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "scripts" / "run_tui_pipeline.sh"
FAKE = REPO / "tests" / "fakes" / "fake_phase.py"
PHASE_SCRIPTS = ("tui_data_prep.py", "13_train_lang_adapter.py", "19_merge_adapter.py", "14_train_core_agent.py",
                 "17_ipo_preference.py", "18_grpo_rl.py")
CANARY = "hf_CANARY_d41d8cd98f00b204"


def make_checkpoint(run_dir: Path, step: int, *, optimizer: bool = True) -> Path:
    ckpt = run_dir / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": np.zeros((8, 8), dtype=np.float32)}, str(ckpt / "adapter_model.safetensors"))
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    if optimizer:
        import torch

        torch.save({"state": {}}, ckpt / "optimizer.pt")
    return ckpt


# ---------------------------------------------------------------- checkpoint validity (Python)


def test_latest_valid_checkpoint_and_each_corruption_falls_back(tmp_path):
    run = tmp_path / "run"
    for step in (10, 20, 30):
        make_checkpoint(run, step)
    (run / "checkpoint-x").mkdir()  # not a step: ignored
    ckpt, warnings = find_resume_checkpoint(run)
    assert ckpt.name == "checkpoint-30" and warnings == []

    corruptions = {
        "trainer_state.json missing": lambda c: (c / "trainer_state.json").unlink(),
        "trainer_state.json unreadable": lambda c: (c / "trainer_state.json").write_text("{trunc"),
        "truncated": lambda c: (c / "adapter_model.safetensors").write_bytes(
            (c / "adapter_model.safetensors").read_bytes()[:-7]),
        "no adapter_model": lambda c: (c / "adapter_model.safetensors").unlink(),
        "optimizer.pt truncated": lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:50]),
    }
    for expected, corrupt in corruptions.items():
        case = tmp_path / expected.replace(" ", "_")
        shutil.copytree(run, case)
        corrupt(case / "checkpoint-30")
        assert expected in checkpoint_problem(case / "checkpoint-30")
        ckpt, warnings = find_resume_checkpoint(case)
        assert ckpt.name == "checkpoint-20", expected
        assert len(warnings) == 1 and "checkpoint-30" in warnings[0] and "falling back" in warnings[0]


def test_a_checkpoint_without_optimizer_state_resumes_with_a_warning(tmp_path, capsys):
    """HF Trainer resumes a checkpoint without optimizer.pt silently, with fresh moments (H200: 1.33 loss apart
    within 3 steps, docs/BENCHMARKS.md run 6): it stays resumable and the choice says so; with the state, or FSDP's
    and DeepSpeed's own optimizer files, no warning."""
    from pipeline_lib.checkpoints import resolve_resume_checkpoint

    run = tmp_path / "run"
    make_checkpoint(run, 10)
    make_checkpoint(run, 20, optimizer=False)
    ckpt, warnings = find_resume_checkpoint(run)
    assert ckpt.name == "checkpoint-20" and len(warnings) == 1 and "no optimizer state" in warnings[0]
    assert resolve_resume_checkpoint(str(ckpt), run) == str(ckpt)
    assert "fresh optimizer moments" in capsys.readouterr().out
    (ckpt / "optimizer.bin").write_bytes(b"")  # FSDP, full state dict
    assert find_resume_checkpoint(run) == (ckpt, [])
    (ckpt / "optimizer.bin").unlink()
    for folder in ("optimizer_0", "global_step20"):  # FSDP sharded; DeepSpeed
        (ckpt / folder).mkdir()
        assert find_resume_checkpoint(run) == (ckpt, []), folder
        (ckpt / folder).rmdir()
    assert find_resume_checkpoint(run)[1]  # control: without them the warning is back
    (ckpt / "optimizer.pt").write_bytes((run / "checkpoint-10" / "optimizer.pt").read_bytes())
    assert find_resume_checkpoint(run) == (ckpt, [])


def test_training_state_skip_resume_fresh(tmp_path):
    run = tmp_path / "run"
    assert training_state(run).action == "fresh"
    make_checkpoint(run, 10)
    state = training_state(run)
    assert (state.action, state.resume_from.name) == ("resume", "checkpoint-10")
    final = run / "final"
    final.mkdir()
    (final / "adapter_config.json").write_text("{}")
    # final/ killed while saving (adapter weights missing): not finished, resume instead.
    assert training_state(run).action == "resume" and training_state(run).warnings
    save_file({"w": np.zeros(4, dtype=np.float32)}, str(final / "adapter_model.safetensors"))
    assert training_state(run).action == "skip"


def test_merge_state_skips_only_when_every_check_passed(tmp_path):
    hf = tmp_path / "merged" / "hf"
    assert merge_state(tmp_path / "merged").action == "fresh"
    hf.mkdir(parents=True)
    checks = {"smoke_test": {"passed": True}, "merged_equals_adapter": {"passed": True},
              "merged_weights_hold_delta": {"passed": True}}
    (hf / "manifest.json").write_text(json.dumps({"passed": True, "checks": checks}))
    assert merge_state(tmp_path / "merged").action == "fresh"  # a passed manifest without its weights
    save_file({"w": np.ones(64, dtype=np.float32)}, str(hf / "model.safetensors"))
    assert merge_state(tmp_path / "merged").action == "skip"
    whole = (hf / "model.safetensors").read_bytes()
    (hf / "model.safetensors").write_bytes(whole[:-40])  # truncated after the manifest was written
    assert merge_state(tmp_path / "merged").action == "fresh"
    (hf / "model.safetensors").write_bytes(whole)
    # Negative controls: a failed check under a top-level "passed": true, no checks at all, a truncated file.
    failed = {**checks, "smoke_test": {"passed": False}}
    (hf / "manifest.json").write_text(json.dumps({"passed": True, "checks": failed}))
    assert merge_state(tmp_path / "merged").action == "fresh"
    (hf / "manifest.json").write_text(json.dumps({"passed": True, "checks": {}}))
    assert merge_state(tmp_path / "merged").action == "fresh"
    (hf / "manifest.json").write_text(json.dumps({"passed": True, "checks": checks})[:-5])
    assert merge_state(tmp_path / "merged").action == "fresh"

def test_paths_and_slug(tmp_path):
    assert model_slug("openai/gpt-oss-20b") == "gpt-oss-20b"
    assert model_slug("/x/checkpoints/Tiny-GPT-OSS/") == "tiny-gpt-oss"
    paths = PipelinePaths(tmp_path, "gpt-oss-20b")
    assert paths.merged_hf == tmp_path / "checkpoints" / "gpt-oss-20b-coding-tui-merged" / "hf"
    assert paths.run_dir("export") == tmp_path / "checkpoints" / "gpt-oss-20b-coding-tui-export"
    assert paths.grpo_tasks == tmp_path / "data" / "rust" / "grpo" / "tasks.jsonl"


def test_disk_preflight_reports_need_and_free(tmp_path, monkeypatch):
    from pipeline_lib import orchestrate

    model = REPO / "configs" / "gpt-oss-20b"
    monkeypatch.setattr(orchestrate, "free_bytes", lambda path: 10 * 2**30)
    ok, msg = disk_preflight("merge", str(model), tmp_path)
    assert not ok and "need ~40.9 GiB" in msg and "free 10.0 GiB" in msg  # 20,914,757,184 x 2 bytes x 1.05
    monkeypatch.setattr(orchestrate, "free_bytes", lambda path: 500 * 2**30)
    assert disk_preflight("export", str(model), tmp_path)[0]


# ---------------------------------------------------------------- bash orchestrator over fake phases


@pytest.fixture
def fake_env(tmp_path):
    """A folder of fake phase scripts, a tiny model config folder and an environment for the pipeline."""
    scripts = tmp_path / "fake_scripts"
    scripts.mkdir()
    for name in PHASE_SCRIPTS[:-1]:
        shutil.copy(FAKE, scripts / name)
    model = tmp_path / "model"
    from pipeline_lib.tiny_model import tiny_gpt_oss_config

    tiny_gpt_oss_config().save_pretrained(model)
    save_file({"w": np.zeros(4, dtype=np.float32)}, str(model / "model.safetensors"))  # preflight wants weights
    env = {k: v for k, v in os.environ.items() if "TOKEN" not in k}
    env = {k: v for k, v in env.items() if k not in ("HF_HOME", "XDG_CACHE_HOME")}  # no saved login leaks in
    env.update(TUI_SCRIPTS_DIR=str(scripts), PYTHON=sys.executable, TUI_PROC1_ENVIRON=str(tmp_path / "no_environ"),
               TUI_WORKSPACE=str(tmp_path / "no_workspace"), HOME=str(tmp_path / "home"))
    return {"scripts": scripts, "model": model, "env": env, "workdir": tmp_path / "work"}


def run_pipeline(fx: dict, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = ["bash", str(PIPELINE), "--workdir", str(fx["workdir"]), "--model", str(fx["model"]), *args]
    return subprocess.run(cmd, env={**fx["env"], **(env or {})}, capture_output=True, text=True, timeout=timeout)


def calls(fx: dict) -> list[dict]:
    path = fx["workdir"] / "fake_calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.slow  # ~20-45 s: several pipeline runs / three meta-device 20B builds
def test_fake_run_then_rerun_skips_everything(fake_env):
    first = run_pipeline(fake_env, env={"HF_TOKEN": CANARY})
    assert first.returncode == 0, first.stdout + first.stderr
    names = [c["script"] for c in calls(fake_env)]
    assert names == ["tui_data_prep.py", "13_train_lang_adapter.py", "19_merge_adapter.py", "14_train_core_agent.py",
                     "17_ipo_preference.py", "19_merge_adapter.py"]
    # HF_TOKEN reaches data prep (hub download) only: the model is a local folder.
    assert [c["script"] for c in calls(fake_env) if c["hf_token"]] == ["tui_data_prep.py"]
    assert calls(fake_env)[0]["hf_token"] == CANARY
    assert "set (hf_****" in first.stdout and CANARY not in first.stdout
    gates = json.loads((fake_env["workdir"] / "logs" / "quality_gates.json").read_text())
    assert gates["tool_calling"]["passed"] == "true" and gates["grpo"]["status"] == "skipped_no_tasks"
    # the fake data prep's held-out split is a marker (data_prep.outputs_exist needs it), not a loadable dataset,
    # and the fake model has no real weights: the evaluation step fails, and being SOFT, the run still completes
    assert "START evaluation" in first.stdout and "END evaluation" in first.stdout
    logs = fake_env["workdir"] / "logs"
    assert (logs / "summary.md").is_file() and (logs / "loss_curves.png").is_file()
    for phase in ("data_prep", "tool_calling_sft", "merge", "agent_sft", "ipo", "export"):
        assert (logs / f"phase_{phase}.log").is_file()
        assert f"START {phase}" in first.stdout and f"END {phase}" in first.stdout
    pipeline_logs = list(logs.glob("tui_pipeline_*.log"))
    assert len(pipeline_logs) == 1 and "pipeline complete" in pipeline_logs[0].read_text()

    second = run_pipeline(fake_env, env={"HF_TOKEN": CANARY})
    assert second.returncode == 0, second.stdout
    assert len(calls(fake_env)) == 6  # nothing ran again
    for phase in ("data_prep", "tool_calling_sft", "merge", "agent_sft", "ipo", "grpo", "export"):
        assert f"END {phase} (skipped" in second.stdout, phase
    assert "GATE tool_calling [HARD]" in second.stdout


@pytest.mark.slow  # ~20-45 s: a pipeline run
def test_task_file_present_runs_grpo(fake_env):
    """With data/<language>/grpo/tasks.jsonl present, Phase 4 runs with the writeup's flags on IPO's adapter and its
    gate is recorded from the logged rewards; export comes after it."""
    tasks = fake_env["workdir"] / "data" / "rust" / "grpo" / "tasks.jsonl"
    tasks.parent.mkdir(parents=True)
    tasks.write_text('{"id": "rust-t-0"}\n')
    shutil.copy(FAKE, fake_env["scripts"] / "18_grpo_rl.py")
    result = run_pipeline(fake_env)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [c["script"] for c in calls(fake_env)]
    assert names[-2:] == ["18_grpo_rl.py", "19_merge_adapter.py"]
    argv = next(c for c in calls(fake_env) if c["script"] == "18_grpo_rl.py")["argv"]
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    ckpt = fake_env["workdir"] / "checkpoints"
    assert flags["--checkpoint"] == str(ckpt / "agent_sft_ipo" / "final") and flags["--task_source"] == str(tasks)
    assert flags["--language"] == "rust" and flags["--output_dir"] == str(ckpt / "agent_sft_grpo")
    assert (flags["--per_device_train_batch_size"], flags["--gradient_accumulation_steps"]) == ("1", "16")
    gates = json.loads((fake_env["workdir"] / "logs" / "quality_gates.json").read_text())
    assert gates["grpo"]["reward_accuracy"] == "0.750" and gates["grpo"]["passed"] == "true"
    assert "--max_completion_length" not in argv  # the tiny demo's settings stay out of real runs


@pytest.mark.slow  # ~20-45 s: several pipeline runs / three meta-device 20B builds
def test_resume_passes_latest_checkpoint(fake_env):
    make_checkpoint(fake_env["workdir"] / "checkpoints" / "tool_calling_sft", 3)
    bad = make_checkpoint(fake_env["workdir"] / "checkpoints" / "tool_calling_sft", 6)
    (bad / "trainer_state.json").unlink()
    result = run_pipeline(fake_env)
    assert result.returncode == 0, result.stdout
    train = next(c for c in calls(fake_env) if c["script"] == "13_train_lang_adapter.py")
    assert train["resumed_from"].endswith("checkpoint-3") and train["start"] == 3
    assert "checkpoint-6 is not resumable (trainer_state.json missing)" in result.stdout + result.stderr


def test_hard_gate_failure_stops_and_is_not_skipped_on_rerun(fake_env):
    failed = run_pipeline(fake_env, env={"FAKE_LOSS": "2.75"})
    assert failed.returncode == 1
    last = failed.stdout.strip().splitlines()[-1]
    assert last.startswith("HARD GATE FAILED: tool_calling avg_loss_last_10 = 2.75, threshold <= 2.0")
    assert [c["script"] for c in calls(fake_env)] == ["tui_data_prep.py", "13_train_lang_adapter.py"]
    assert "| tool_calling_sft | failed |" in (fake_env["workdir"] / "logs" / "summary.md").read_text()
    again = run_pipeline(fake_env)  # final/ exists: the phase is skipped but its saved gate still fails
    assert again.returncode == 1 and again.stdout.strip().splitlines()[-1] == last
    assert len(calls(fake_env)) == 2  # merge never ran


def test_second_pipeline_on_same_workdir_is_refused(fake_env):
    logs = fake_env["workdir"] / "logs"
    logs.mkdir(parents=True)
    with open(logs / ".pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("424242\n")
        lock.flush()
        refused = run_pipeline(fake_env, timeout=60)
    assert refused.returncode != 0
    assert "another pipeline (pid 424242) is running" in refused.stdout
    assert calls(fake_env) == [] and not (logs / "summary.md").exists()


def test_concurrent_launch_refused_while_first_runs(fake_env):
    cmd = ["bash", str(PIPELINE), "--workdir", str(fake_env["workdir"]), "--model", str(fake_env["model"])]
    first = subprocess.Popen(cmd, env={**fake_env["env"], "FAKE_STEP_SLEEP": "0.5"}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240  # a loaded 2-core box: ~10 python start-ups come first
        while not (fake_env["workdir"] / "logs" / "phase_tool_calling_sft.log").exists():  # 20 steps x 0.5 s
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        second = run_pipeline(fake_env, timeout=60)
        assert second.returncode == 1 and "another pipeline (pid" in second.stdout
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_token_from_proc1_environ_and_workspace_caches(fake_env, tmp_path):
    environ = tmp_path / "environ"
    environ.write_bytes(b"PATH=/bin\0RUNPOD_SECRET_HF_TOKEN=" + CANARY.encode() + b"\0HOME=/root\0")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    result = run_pipeline(fake_env, "--skip-data", env={"TUI_PROC1_ENVIRON": str(environ),
                                                         "TUI_WORKSPACE": str(workspace)})
    # --skip-data with no data: a clear early stop, after the banner.
    assert result.returncode == 1 and "--skip-data, but" in result.stdout.strip().splitlines()[-1]
    assert f"HF_HOME={workspace}/.cache/huggingface" in result.stdout and (workspace / "tmp").is_dir()
    assert "HF_TOKEN:       set (hf_****, from RUNPOD_SECRET_HF_TOKEN in" in result.stdout
    assert CANARY not in result.stdout + result.stderr


@pytest.mark.slow  # ~35 s: two pipeline runs up to the first gate
def test_token_saved_by_login_is_found_after_hf_home_moves(fake_env, tmp_path):
    """`huggingface-cli login` wrote ~/.cache/huggingface/token; the pipeline moves HF_HOME to the workspace, where
    huggingface_hub no longer looks. The token is found, handed to data prep, and never printed or logged."""
    saved = tmp_path / "home" / ".cache" / "huggingface" / "token"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    stop = {"TUI_WORKSPACE": str(workspace), "FAKE_LOSS": "2.75"}  # the tool-calling HARD gate ends the run early
    control = run_pipeline(fake_env, env=stop)  # control: no saved token, nothing found
    assert "HF_TOKEN:       not set" in control.stdout and calls(fake_env)[0]["hf_token"] is None
    shutil.rmtree(fake_env["workdir"])  # a fresh run: data prep runs again
    saved.parent.mkdir(parents=True)
    saved.write_text(CANARY + "\n")
    result = run_pipeline(fake_env, env=stop)
    assert result.returncode == 1 and f"HF_HOME={workspace}/.cache/huggingface" in result.stdout
    assert f"HF_TOKEN:       set (hf_****, from the token saved by huggingface-cli login in {saved})" in result.stdout
    assert calls(fake_env)[0]["script"] == "tui_data_prep.py" and calls(fake_env)[0]["hf_token"] == CANARY
    logged = [p for p in (fake_env["workdir"] / "logs").rglob("*") if p.is_file()]
    assert logged and not any(CANARY in p.read_text(errors="replace") for p in logged)
    assert CANARY not in result.stdout + result.stderr


def test_bad_arguments_fail_early(fake_env):
    for args, message in ((["--batch-profile", "huge"], "--batch-profile must be"), (["--bogus"], "unknown argument"),
                          (["--tiny"], "--tiny uses the embedded tiny GPT-OSS; drop --model")):
        result = run_pipeline(fake_env, *args, timeout=60)
        assert result.returncode == 1 and message in result.stdout, args
    help_text = subprocess.run(["bash", str(PIPELINE), "--help"], capture_output=True, text=True).stdout
    assert "--batch-profile NAME" in help_text and "--dry-run" in help_text


def test_start_wrapper_refuses_second_session_and_passes_flags(tmp_path):
    """A stub `screen` on PATH: the wrapper must refuse when tui_training exists, else start it detached."""
    stub = tmp_path / "bin" / "screen"
    stub.parent.mkdir()
    stub.write_text('#!/usr/bin/env bash\nif [[ $1 == -ls ]]; then cat "$STUB_SESSIONS"; exit 1; fi\n'
                    'printf "%s\\n" "$@" > "$STUB_ARGS"\n')
    stub.chmod(0o755)
    sessions = tmp_path / "sessions"
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "STUB_SESSIONS": str(sessions),
           "STUB_ARGS": str(tmp_path / "args")}
    wrapper = REPO / "scripts" / "start_tui_training.sh"
    sessions.write_text("There is a screen on:\n\t12345.tui_training\t(Detached)\n1 Socket in /run/screen.\n")
    refused = subprocess.run(["bash", str(wrapper), "--quick-test"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "screen -r tui_training" in refused.stderr
    sessions.write_text("No Sockets found in /run/screen.\n")
    started = subprocess.run(["bash", str(wrapper), "--quick-test", "--workdir", str(tmp_path / "w"),
                              "--batch-profile", "aggressive"], env=env, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stderr
    argv = (tmp_path / "args").read_text().splitlines()
    assert argv[:3] == ["-dmS", "tui_training", "bash"]
    inner = argv[-1]
    assert "run_tui_pipeline.sh --quick-test --workdir" in inner and "--batch-profile aggressive" in inner
    assert f"TUI_PIPELINE_LOG={tmp_path}/w/logs/tui_pipeline_" in inner
    assert "screen -r tui_training" in started.stdout


# ---------------------------------------------------------------- dry run on the real 20B config (no weights)


@pytest.mark.slow  # ~20-45 s: several pipeline runs / three meta-device 20B builds
def test_dry_run_on_config_only_gpt_oss_20b(tmp_path):
    model = tmp_path / "gpt-oss-20b"
    model.mkdir()
    shutil.copy(REPO / "configs" / "gpt-oss-20b" / "config.json", model)
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(PIPELINE), "--dry-run", "--model", str(model), "--workdir",
                             str(tmp_path / "w")], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "LoRA r64, trainable 739,639,296" in out and "LoRA r128, trainable 1,479,278,592" in out
    assert "parameters: 20,914,757,184 (bfloat16)" in out
    assert "batch 8 x accum 6 = 48, seq 8192" in out and "batch 1 x accum 24 = 24, seq 32768" in out
    assert "grpo              SKIP" in out and "merge ~40.9 GiB" in out
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


# ---------------------------------------------------------------- end to end on the tiny GPT-OSS (REAL phase scripts)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if "TOKEN" not in k and not k.startswith("TUI_") and k != "TENSORBOARD_LOGGING_DIR"}  # the run's own logs/
    return {**env, "PYTHON": sys.executable, **extra}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """ONE real `--tiny` pipeline shared by the end-to-end tests, with an interruption built in: the first launch is
    SIGKILLed (whole process group) once tool-calling SFT has saved checkpoint-20, checkpoint-20's adapter is then
    truncated, and the relaunch must fall back to checkpoint-10, resume there and finish every phase.
    HF_TOKEN is a canary that must not reach any file."""
    work = tmp_path_factory.mktemp("tiny_e2e")
    env = clean_env(HF_TOKEN=CANARY)
    cmd = ["bash", str(PIPELINE), "--tiny", "--workdir", str(work)]
    ckpt20 = work / "checkpoints" / "tool_calling_sft" / "checkpoint-20"
    with open(work / "killed_run.out", "w") as out:
        first = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 900
        while not (ckpt20 / "trainer_state.json").is_file():  # written last, after the adapter and optimizer
            assert first.poll() is None, (work / "killed_run.out").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint-20 within 15 min"
            time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    adapter = ckpt20 / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])  # a disk that filled up mid-save
    t0 = time.time()
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    return {"work": work, "result": second, "seconds": time.time() - t0, "cmd": cmd, "env": env}


@pytest.mark.slow
def test_tiny_run_completes_with_gates_and_exports(tiny_run):
    result, work = tiny_run["result"], tiny_run["work"]
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    gates = json.loads((work / "logs" / "quality_gates.json").read_text())
    assert gates["tool_calling"]["passed"] == "true" and float(gates["tool_calling"]["loss"]) < 12.0
    assert gates["merge"]["passed"] == gates["merge"]["smoke_test"] == gates["merge"]["logits_equivalence"] == "true"
    assert gates["agent_sft"]["passed"] == "true" and gates["ipo"]["passed"] == "true"
    # Phase 4 ran for real on Python tasks the run generated: sandboxed rewards (a random model earns ~0, so the
    # SOFT gate warns), real optimizer steps, every LoRA tensor moved (TRL's entropy bonus; see phase_grpo).
    assert 0.0 <= float(gates["grpo"]["reward_accuracy"]) <= 1.0 and "status" not in gates["grpo"]
    grpo = json.loads((work / "checkpoints" / "agent_sft_grpo" / "final" / "phase_metrics.json").read_text())
    assert grpo["global_step"] == 4 and grpo["reward_accuracy_steps"] == 4 and grpo["language"] == "python"
    assert grpo["lora_update_check"]["passed"] and grpo["lora_update_check"]["expert_lora_changed"] > 0
    assert grpo["tasks"] > 0 and grpo["sandbox"]["available"] and grpo["num_generations"] == 2
    assert grpo["policy_adapter"].endswith("agent_sft_ipo/final")
    assert (work / "data" / "python" / "grpo" / "heldout.jsonl").is_file()
    assert gates["export"]["hf"] == "true" and gates["export"]["gguf"] == "true"
    # evaluation: the base and every trained stage on Phase 0's held-out tool calls and the held-out Python tasks
    assert gates["evaluation"]["type"] == "SOFT" and gates["evaluation"]["stages"] == \
        "base, tool_calling_sft, agent_sft, ipo, grpo"
    for stage in ("base", "tool_calling_sft", "agent_sft", "ipo", "grpo"):
        report = json.loads((work / "logs" / "eval" / f"{stage}.json").read_text())
        assert report["tool_calls"]["n"] > 0 and report["tasks"]["n"] > 0, stage
    export = work / "checkpoints" / "tiny-gpt-oss-coding-tui-export"
    assert (export / "hf" / "config.json").is_file() and list((export / "gguf_q4").glob("*.gguf"))
    # the card, written by the export before the evaluation ran, was rewritten with the evaluation table
    card_evaluation = (export / "hf" / "README.md").read_text().split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    assert "| base | " in card_evaluation and "| grpo | " in card_evaluation, card_evaluation
    summary = (work / "logs" / "summary.md").read_text()
    for phase in ("data_prep", "tool_calling_sft", "merge", "agent_sft", "ipo", "grpo", "export"):
        assert f"| {phase} |" in summary
    assert "## Evaluation (held-out; delta to the base model)" in summary and "| ipo | 0." in summary
    assert (work / "logs" / "loss_curves.png").stat().st_size > 1000
    assert result.stdout.strip().splitlines()[-1].split("] ", 1)[1].startswith("pipeline complete in")


@pytest.mark.slow
def test_sigkill_resume_falls_back_past_corrupt_checkpoint(tiny_run):
    out, work = tiny_run["result"].stdout, tiny_run["work"]
    assert "checkpoint-20 is not resumable (adapter_model.safetensors: truncated" in out + tiny_run["result"].stderr
    assert "tool_calling_sft: resuming from checkpoint-10" in out
    run_dir = work / "checkpoints" / "tool_calling_sft"
    metrics = json.loads((run_dir / "final" / "phase_metrics.json").read_text())
    assert metrics["resumed_from_checkpoint"].endswith("checkpoint-10") and metrics["resumed_from_step"] == 10
    state = json.loads((run_dir / "final" / "trainer_state.json").read_text())
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert state["global_step"] == 40 and steps == list(range(1, 41))  # the step count continued from 10
    assert (run_dir / "checkpoint-20" / "trainer_state.json").is_file()  # rewritten whole by the resumed run


@pytest.mark.slow
def test_rerun_after_success_repeats_no_work(tiny_run):
    t0 = time.time()
    again = subprocess.run(tiny_run["cmd"], env=tiny_run["env"], capture_output=True, text=True, timeout=300)
    seconds = time.time() - t0
    assert again.returncode == 0, again.stdout[-3000:]
    assert seconds < 60, seconds
    runs = [line for line in again.stdout.splitlines() if "] run: " in line]
    assert len(runs) == 1 and "make_tiny_gpt_oss.py" in runs[0]  # only the idempotent tiny-model check
    for phase in ("tool_calling_sft", "merge", "agent_sft", "ipo", "grpo", "export"):
        assert f"END {phase} (skipped" in again.stdout
    assert "GATE tool_calling [HARD]" in again.stdout and "GATE merge [HARD]" in again.stdout
    assert "eval ipo: up to date" in again.stdout  # every stage's report is current: nothing evaluated again


@pytest.mark.slow
def test_no_token_canary_in_outputs(tiny_run):
    work = tiny_run["work"]
    needle = CANARY.encode()
    leaks = [p for root in ("logs", "checkpoints", "data") for p in (work / root).rglob("*")
             if p.is_file() and needle in p.read_bytes()]
    assert leaks == []
    assert needle not in (tiny_run["result"].stdout + tiny_run["result"].stderr).encode()


@pytest.mark.slow
def test_hard_gate_failure_on_real_run_blocks_later_phases(tiny_run, tmp_path):
    """A copy of the finished run, a stricter tool-calling threshold: the rerun skips training but re-checks the
    saved gate, fails, and never reaches merge (its output was removed from the copy, and is not recreated)."""
    work = tmp_path / "copy"
    shutil.copytree(tiny_run["work"], work, ignore=shutil.ignore_patterns(
        "*-coding-tui-merged", "*-coding-tui-export", "agent_sft*", "tui_pipeline_*.log"))
    merged = work / "checkpoints" / "tiny-gpt-oss-coding-tui-merged"
    strict = tmp_path / "gates.yaml"
    strict.write_text((REPO / "configs" / "gates.yaml").read_text().replace(
        "tool_calling_sft: {metric: avg_loss_last_10, op: \"<=\", threshold: 12.0",
        "tool_calling_sft: {metric: avg_loss_last_10, op: \"<=\", threshold: 5.0"))
    cmd = ["bash", str(PIPELINE), "--tiny", "--workdir", str(work), "--gates-config", str(strict)]
    for _ in range(2):
        failed = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
        assert failed.returncode == 1
        last = failed.stdout.strip().splitlines()[-1]
        assert last.startswith("HARD GATE FAILED: tool_calling avg_loss_last_10 = 11.") and "threshold <= 5.0" in last
        assert "START merge" not in failed.stdout and not merged.exists()


@pytest.mark.slow
def test_live_metrics_progress_lines_and_cost_table(tiny_run):
    """make demo's run: TensorBoard events for every training phase, progress/ETA lines, cost table in summary.md."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work, out = tiny_run["work"], tiny_run["result"].stdout
    for phase in ("tool_calling_sft", "agent_sft", "ipo", "grpo"):
        acc = EventAccumulator(str(work / "logs" / "tensorboard" / phase))
        acc.Reload()
        losses = [e.value for e in acc.Scalars("train/loss")]
        assert losses and all(v == v for v in losses), phase  # a real, finite loss series
        assert "train/tokens_per_second" in acc.Tags()["scalars"], phase
    assert "[progress] phase 2/7 tool_calling_sft starting" in out
    assert "[progress] phase 4/7 agent_sft | step 1/30" in out and "phase ETA" in out
    summary = (work / "logs" / "summary.md").read_text()
    assert "| tokens trained | wall time | GPU-hours |" in summary
