"""Which checkpoint a phase resumes from and whether a finished adapter is usable: one rule, used by the
orchestrator (skip / resume / fresh), by every phase script's ``--resume_from_checkpoint auto`` and by the export's
adapter choice. Also how every training phase resumes (train_to_max_steps) and the check that a resume trained
something (resume_problems)."""

from __future__ import annotations

import functools
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from pipeline_lib.gates import safetensors_problem


def checkpoint_step(path: Path) -> int:
    """N of a checkpoint-N folder; -1 for anything else."""
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else -1


def checkpoint_problem(ckpt: Path) -> str | None:
    """None when HF Trainer can resume from ``ckpt``; else what is wrong.

    The Trainer writes trainer_state.json last (after weights, optimizer, scheduler, RNG), so a run killed while
    saving leaves it missing; a disk that filled up leaves truncated safetensors or torch zip files.
    """
    state = ckpt / "trainer_state.json"
    if not state.is_file():
        return "trainer_state.json missing"
    try:
        step = json.loads(state.read_text())["global_step"]
        if not isinstance(step, int):
            raise ValueError("global_step is not an integer")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"trainer_state.json unreadable ({exc.__class__.__name__})"
    weights = sorted(ckpt.glob("adapter_model*.safetensors")) or sorted(ckpt.glob("model*.safetensors"))
    if not weights:
        return "no adapter_model/model safetensors"
    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            return problem
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt"):
        path = ckpt / name
        if path.exists():
            try:  # torch.save files are zip archives; a truncated one has no central directory
                with zipfile.ZipFile(path):
                    pass
            except (OSError, zipfile.BadZipFile):
                return f"{name} truncated or corrupt"
    return None


def optimizer_state_warning(ckpt: Path) -> str | None:
    """A warning when ``ckpt`` has no optimizer state (``save_only_model``, or deleted to free disk): HF Trainer then
    resumes silently with fresh optimizer moments. Resumable, but not the run it was cut from: on the H200 a
    2-layer agent SFT resumed that way drifted 1.33 in loss within 3 steps, where a resume with the state matched
    the uninterrupted run exactly (scripts/check_optimizer_resume.py, docs/BENCHMARKS.md run 6)."""
    # optimizer.pt (one process, DDP), optimizer.bin (FSDP full state dict), optimizer_0/ (FSDP sharded),
    # global_step*/ (DeepSpeed)
    if any(ckpt.glob("optimizer*")) or any(ckpt.glob("global_step*")):
        return None
    return (f"{ckpt.name} has no optimizer state (optimizer.pt): the Trainer resumes it with fresh optimizer "
            f"moments, so the run will not continue exactly as it would have")


def find_resume_checkpoint(run_dir: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """Newest valid checkpoint-N under run_dir and a warning for every newer one that is not valid (and for a
    chosen one without optimizer state)."""
    warnings = []
    for ckpt in sorted(Path(run_dir).glob("checkpoint-*"), key=checkpoint_step, reverse=True):
        if checkpoint_step(ckpt) < 0 or not ckpt.is_dir():
            continue
        problem = checkpoint_problem(ckpt)
        if problem is None:
            no_state = optimizer_state_warning(ckpt)
            return ckpt, warnings + ([no_state] if no_state else [])
        warnings.append(f"{ckpt.name} is not resumable ({problem}); falling back to an earlier checkpoint")
    return None, warnings


def resolve_resume_checkpoint(value: str | None, output_dir: str | os.PathLike) -> str | None:
    """``--resume_from_checkpoint``: None/"" -> fresh; ``auto`` -> the newest valid checkpoint-N (None on a fresh
    run), warning about newer ones passed over; a path must be a valid checkpoint."""
    if not value:
        return None
    if value == "auto":
        ckpt, warnings = find_resume_checkpoint(output_dir)
        for warning in warnings:
            print(f"WARNING: {warning}", flush=True)
        return str(ckpt) if ckpt is not None else None
    problem = checkpoint_problem(Path(value))
    if problem is not None:
        raise FileNotFoundError(f"--resume_from_checkpoint {value}: not a resumable checkpoint ({problem})")
    no_state = optimizer_state_warning(Path(value))
    if no_state:
        print(f"WARNING: {no_state}", flush=True)
    return value


def final_adapter_problem(final: Path) -> str | None:
    """None when ``final/`` holds a finished adapter: adapter_config.json and loadable adapter weights (a run killed
    while saving leaves a config without complete weights)."""
    if not (final / "adapter_config.json").is_file():
        return "no adapter_config.json"
    weights = sorted(final.glob("adapter_model*.safetensors"))
    if not weights:
        return "adapter_model.safetensors missing"
    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            return problem
    return None


@functools.cache  # registered once per process
def load_indexed_cpu_locations() -> None:
    """Let ``torch.load(map_location="cpu:N")`` work: a resumed multi-process CPU (gloo) run needs it.

    transformers 5.17 loads the optimizer state of a multi-process run with ``map_location=args.device``; on CPU
    accelerate 1.15 names that device ``cpu:0`` (its MULTI_CPU device has an index), and torch 2.13's loader accepts
    only ``cpu``: resuming failed with "don't know how to restore data location of torch.storage.UntypedStorage
    (tagged with cpu:0)" (scripts/gpu_multi_gpu.sh --cpu, 2 gloo ranks). GPUs (``cuda:N``) never reach this. The
    registered loader keeps such storages on the CPU; it tags nothing, so what torch saves is unchanged.
    """
    import torch.serialization as ser

    def restore(storage: Any, location: str) -> Any:
        return storage if re.fullmatch(r"cpu:\d+", location) else None

    ser.register_package(11, lambda obj: None, restore)


def train_to_max_steps(trainer: Any, resume: str | None) -> None:
    """``trainer.train(resume_from_checkpoint=resume)``, except when that checkpoint already reached max_steps.

    transformers 5.17 checks max_steps only after an optimizer step: resuming a checkpoint at global_step ==
    max_steps mid-epoch (agent SFT: checkpoint-30 of a max_steps 30 run, 30 steps not a whole number of epochs)
    trained a 31st step. Then the checkpoint's weights and trainer state are loaded as they are (Trainer's own
    ``_load_from_checkpoint``, what ``train(resume_from_checkpoint=...)`` calls) and nothing is trained.
    """
    injected = os.environ.get("PIPELINE_TEST_FAIL_RANK")  # tests only: tests/test_multiprocess.py
    if injected is not None and injected == os.environ.get("RANK", "0"):
        raise RuntimeError(f"injected failure on rank {injected} (PIPELINE_TEST_FAIL_RANK)")
    if resume and trainer.args.world_size > 1 and trainer.args.device.type == "cpu":
        load_indexed_cpu_locations()
    if resume:
        from transformers import TrainerState

        state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
        if 0 < trainer.args.max_steps <= state.global_step:
            trainer._load_from_checkpoint(resume)
            trainer.state = state
            print(f"{Path(resume).name} is at global_step {state.global_step} >= max_steps "
                  f"{trainer.args.max_steps}: nothing left to train, final/ is written from it")
            return
    trainer.train(resume_from_checkpoint=resume)


def resume_problems(metrics: dict[str, Any]) -> list[str]:
    """A resume that trained nothing (global_step never passed the resumed step): the rule every phase checks."""
    resumed = metrics.get("resumed_from_step")
    if resumed is not None and resumed < metrics["max_steps"] and metrics["global_step"] <= resumed:
        return [f"resume trained nothing: global_step stayed at {resumed}"]
    return []
