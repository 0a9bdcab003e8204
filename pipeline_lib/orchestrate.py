"""Python side of scripts/run_tui_pipeline.sh: paths, per-phase decisions and commands, input records, disk
preflight, input validation, dry-run plan, summary.

The bash orchestrator runs the phases; every decision that reads a file is made here, so it is tested. ``CTX`` is
the run's context flags (--workdir W --model M --batch-profile P [--quick-test] [--tiny] [--skip-data]
[--configs-dir D] [--scripts-dir D] [--grpo-language L] [--python PY] [--llama-cpp-dir D]):

    python -m pipeline_lib.orchestrate paths CTX               # shell assignments: folders, PHASE_NAMES
    python -m pipeline_lib.orchestrate preflight CTX --gates-config FILE   # every input checked before any phase
    python -m pipeline_lib.orchestrate step PHASE CTX          # decide skip/resume/redo/fresh, move stale output
                                                               # aside, record inputs; prints ACTION, CMD, ...
    python -m pipeline_lib.orchestrate record PHASE CTX        # after the phase ran: record what it was made from
    python -m pipeline_lib.orchestrate disk --stage S CTX      # free space vs need (stale folders counted)
    python -m pipeline_lib.orchestrate prune-stale CTX         # delete <dir>.stale-* folders
    python -m pipeline_lib.orchestrate plan CTX                # --dry-run
    python -m pipeline_lib.orchestrate summary CTX             # logs/summary.md

State rules (README "State: skipped, resumed, redone"): every phase's run folder holds ``pipeline_inputs.json``, a
fingerprint of what it was made from (config file, batch values, --quick-test, base model, upstream outputs' own
fingerprints, data prep's source files). A finished phase whose recorded inputs still match is skipped; one that no
longer matches is redone and its old folder moved to ``<dir>.stale-<UTC time>``; since the redone output has a new
fingerprint, every phase that consumes it is redone in turn.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib import phases
from pipeline_lib.checkpoints import (  # noqa: F401  (re-exported: the resume rule's home is checkpoints.py)
    checkpoint_problem,
    final_adapter_problem,
    find_resume_checkpoint,
)
from pipeline_lib.gates import DTYPE_BYTES, GATE_KEYS, export_problems, read_gates, read_manifest, safetensors_problem
from pipeline_lib.merge import merge_manifest_passed
from pipeline_lib.metrics import latest_trainer_state, loss_history
from pipeline_lib.paths import (  # noqa: F401  (tests and scripts import them from here too)
    DECISIONS,
    QUICK_TEST_DIR,
    RECORD_FILE,
    RUN_ESTIMATE,
    RUN_RECORD,
    STALE_MARK,
    PipelinePaths,
)
from pipeline_lib.phases import model_slug
from pipeline_lib.profiles import FIXED_PROFILES, per_gpu_accum
from pipeline_lib.provenance import write_json_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = REPO_ROOT / "configs"
SCRIPTS_DIR = REPO_ROOT / "scripts"
SAMPLES_DIR = REPO_ROOT / "data" / "samples"  # --tiny's local data source
DEFAULT_MODEL = "openai/gpt-oss-20b"
PHASES = phases.NAMES
TRAINED_PHASES = tuple(p.name for p in phases.TRAINED)
DATASETS = phases.DATASETS
# Data download estimate (hub source): the eight datasets of writeup §5 as parquet/json plus their Arrow copies
# in the datasets cache. Quick test downloads the same files (split slicing happens after download).
DATA_DOWNLOAD_BYTES = 10 * 2**30
# GGUF estimate per parameter: the converter's bf16/f16 intermediate (2 bytes) + Q4_K_M, which on the 20B model
# falls back to Q5_0/Q8_0 for most tensors (2880 % 256 != 0, ~0.75 bytes) + MXFP4_MOE (~0.6 bytes).
GGUF_BYTES_PER_PARAM = 2.0 + 0.75 + 0.6
MXFP4_BYTES_PER_PARAM = 4.25 / 8  # 4-bit values + one shared 8-bit scale per 32 (the released MoE weights)
HEADROOM = 1.05  # 5% over the estimate


# ---------------------------------------------------------------- paths and run context


@dataclass(frozen=True)
class RunContext:
    """Everything a run was asked for; the same flags reach every orchestrate subcommand."""

    workdir: Path
    model: str
    profile: str = "balanced"  # batch profile (tiny with --tiny)
    quick_test: bool = False
    tiny: bool = False
    skip_data: bool = False
    grpo_language: str = "rust"
    configs_dir: Path = CONFIGS_DIR
    scripts_dir: Path = SCRIPTS_DIR
    python: str = field(default_factory=lambda: sys.executable)
    llama_cpp_dir: str | None = None
    local_data: Path = SAMPLES_DIR  # --tiny's data source
    report_to: str | None = None  # --report-to: where the training phases send live metrics (else their YAML's)
    save_steps: int | None = None  # --save-steps: every training phase's checkpoint interval (else profile / YAML)
    gpus: int = 1  # --gpus N: the training phases run as N data-parallel processes (accelerate launch, DDP)

    @property
    def paths(self) -> PipelinePaths:
        return PipelinePaths(self.workdir, model_slug(self.model), self.grpo_language, self.quick_test)

    @property
    def batch_profile(self) -> str:
        return "tiny" if self.tiny else self.profile

    @property
    def gate_profile(self) -> str:
        return "tiny" if self.tiny else "default"

    @property
    def model_is_local(self) -> bool:
        return self.tiny or Path(self.model).is_dir()

    @property
    def data_source(self) -> str:
        return "local" if self.tiny else "hub"

    def config_file(self, phase: phases.Phase) -> Path:
        return self.configs_dir / phase.config

    def script(self, phase: phases.Phase) -> Path:
        return self.scripts_dir / phase.script

    def batch(self, phase: phases.Phase) -> Any:
        from pipeline_lib.profiles import resolve

        return resolve(self.batch_profile, phase.name, quick_test=self.quick_test,
                       path=self.configs_dir / "batch_profiles.yaml")


def shell_assignments(values: dict[str, Any]) -> str:
    return "\n".join(f"{k}={shlex.quote('' if v is None else str(v))}" for k, v in values.items())


# ---------------------------------------------------------------- what is on disk (one rule per question)


@dataclass(frozen=True)
class PhaseState:
    action: str  # skip | resume | fresh
    reason: str
    resume_from: Path | None = None
    warnings: tuple[str, ...] = ()

    def shell(self) -> str:
        return shell_assignments({"ACTION": self.action, "REASON": self.reason, "RESUME_FROM": self.resume_from})


def training_state(run_dir: str | os.PathLike) -> PhaseState:
    """Writeup §2 auto-resume: a finished final/ -> skip; checkpoint-* -> resume (newest VALID); else fresh.

    A final/ whose adapter weights do not load (killed while saving) does not count as finished.
    """
    run = Path(run_dir)
    final = run / "final"
    warnings = []
    if (final / "adapter_config.json").is_file():
        problem = final_adapter_problem(final)
        if problem is None:
            return PhaseState("skip", f"{final / 'adapter_config.json'} present")
        warnings.append(f"{final} is incomplete ({problem}); not treating the phase as finished")
    ckpt, more = find_resume_checkpoint(run)
    warnings += more
    if ckpt is not None:
        return PhaseState("resume", f"resuming from {ckpt.name}", ckpt, tuple(warnings))
    reason = "no valid checkpoint-*" if warnings else "no checkpoint yet"
    return PhaseState("fresh", reason, None, tuple(warnings))


def merge_state(merged_dir: str | os.PathLike) -> PhaseState:
    """Skip when hf/manifest.json passed (pipeline_lib.merge's rule) and every shard it wrote is still whole."""
    hf = Path(merged_dir) / "hf"
    manifest = read_manifest(hf / "manifest.json")
    if manifest is None:
        return PhaseState("fresh", "no passed hf/manifest.json")
    if not merge_manifest_passed(manifest):
        return PhaseState("fresh", "hf/manifest.json not passed")
    shards = sorted(hf.glob("*.safetensors"))
    bad = [p for p in (safetensors_problem(s) for s in shards) if p] or ([] if shards else ["no *.safetensors"])
    if bad:
        return PhaseState("fresh", f"hf/manifest.json passed but the files are not whole ({'; '.join(bad)})")
    return PhaseState("skip", "hf/manifest.json says passed, shards whole")


def export_state(export_dir: str | os.PathLike) -> PhaseState:
    """Skip when the export manifest passed and its files are still whole (gates.export_problems, also the gate's
    rule): a truncated hf/model.safetensors is redone, not skipped."""
    export = Path(export_dir)
    if read_manifest(export / "manifest.json") is None:
        return PhaseState("fresh", "no export manifest.json")
    problems = export_problems(export)
    if problems:
        return PhaseState("fresh", "export incomplete: " + "; ".join(problems))
    return PhaseState("skip", "export manifest.json passed, files whole")


def data_state(data_dir: str | os.PathLike) -> PhaseState:
    """Skip when data prep finished (pipeline_lib.data_prep.outputs_exist: every dataset saved, report without an
    error)."""
    from pipeline_lib.data_prep import outputs_exist

    data = Path(data_dir)
    if outputs_exist(data):
        return PhaseState("skip", f"{data} holds every dataset and a finished prep_report.json")
    if (data / "prep_report.json").is_file():
        return PhaseState("fresh", "prep_report.json records an error or a dataset is missing")
    return PhaseState("fresh", "no prep_report.json yet")


def disk_state(phase: phases.Phase, run_dir: Path) -> PhaseState:
    states = {phases.KIND_DATA: data_state, phases.KIND_TRAIN: training_state, phases.KIND_MERGE: merge_state,
              phases.KIND_EXPORT: export_state}
    return states[phase.kind](run_dir)


# ---------------------------------------------------------------- what a phase was made from


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def config_fingerprint(path: Path) -> str | None:
    """A phase config as an input: its parsed values (key order, comments and layout do not count, so a comment-only
    edit redoes nothing); None when the file is missing."""
    import yaml

    if not path.is_file():
        return None
    return sha256_json(yaml.safe_load(path.read_text()))


def _stat(path: Path) -> list[Any]:
    """Cheap identity of a large file: name, size, mtime. Hashing 39 GB of merged weights on every rerun is not
    affordable; a retrained or rewritten file changes size or mtime."""
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def model_identity(model: str) -> dict[str, Any]:
    """The base model as an input: a hub id by name; a folder by its config.json content and weight files."""
    folder = Path(model)
    if not folder.is_dir():
        return {"hub_id": model}
    config = folder / "config.json"
    return {"folder": str(folder.resolve()), "config": sha256_file(config) if config.is_file() else None,
            "weights": [_stat(p) for p in sorted(folder.glob("*.safetensors"))]}


DATA_PREP_SPLITS = ("train", "heldout")  # the dataset folders data prep writes under each category


def output_fingerprint(phase: phases.Phase, ctx: RunContext) -> str | None:
    """Identity of a finished phase's output (None when it has none): its own recorded inputs plus the files
    downstream phases read. Small files by content, weights by name/size/mtime (_stat)."""
    run = ctx.paths.run_dir(phase.name)
    if disk_state(phase, run).action != "skip":
        return None
    if phase.kind == phases.KIND_DATA:  # state.json carries each dataset's content fingerprint; cache-*.arrow is not
        # Only the datasets data prep writes (<category>/train, tool_calling/heldout): agent SFT later packs its data
        # into <category>/train_packed_<len>/ beside them, and counting that folder made every rerun after a
        # finished run redo the whole curriculum ("upstream data_prep changed").
        files = [run / "prep_report.json"] + sorted(p for p in run.glob("*/*/state.json")
                                                    if p.parent.name in DATA_PREP_SPLITS)
        listing = [[str(p.relative_to(run)), sha256_file(p)] for p in files]
    elif phase.kind == phases.KIND_TRAIN:
        final = run / "final"
        listing = [["adapter_config.json", sha256_file(final / "adapter_config.json")]]
        listing += [_stat(p) for p in sorted(final.glob("adapter_model*.safetensors"))]
    else:
        folder = run / "hf" if phase.kind == phases.KIND_MERGE else run
        listing = [["manifest.json", sha256_file(folder / "manifest.json")]]
        listing += [_stat(p) for p in sorted((run / "hf").glob("*.safetensors"))]
    record = read_record(run)
    return sha256_json({"inputs": record.get("fingerprint") if record else None, "files": listing})


def phase_inputs(phase: phases.Phase, ctx: RunContext) -> dict[str, Any]:
    """Everything that decides what ``phase`` produces, as it stands now."""
    config = ctx.config_file(phase)
    inputs: dict[str, Any] = {"config": config_fingerprint(config),
                              "quick_test": ctx.quick_test}
    if phases.MODEL in phase.consumes:
        inputs["model"] = model_identity(ctx.model)
    if phase.trains:
        inputs["batch"] = asdict(ctx.batch(phase))
    upstream = {name: output_fingerprint(phases.get(name), ctx) for name in phase.consumes if name in phases.BY_NAME}
    if upstream:
        inputs["upstream"] = upstream
    if phases.GRPO_TASKS in phase.consumes:
        tasks = ctx.paths.grpo_tasks
        inputs["grpo_tasks"] = sha256_file(tasks) if tasks.is_file() else None
    if phase.kind == phases.KIND_DATA:
        inputs["source"] = ctx.data_source
        if ctx.data_source == "local":  # the bundled rows are small (~1 MB): hash them, so an edited file rebuilds
            inputs["local_files"] = {p.name: sha256_file(p) for p in sorted(ctx.local_data.glob("*.jsonl"))}
    return inputs


def read_record(run_dir: Path) -> dict[str, Any] | None:
    return read_manifest(Path(run_dir) / RECORD_FILE)


def write_record(phase: phases.Phase, ctx: RunContext) -> Path:
    """Record the current inputs in the run folder (and, for a training phase, beside its adapter in final/)."""
    run = ctx.paths.run_dir(phase.name)
    inputs = phase_inputs(phase, ctx)
    record = {"phase": phase.name, "fingerprint": sha256_json(inputs), "inputs": inputs,
              "recorded_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = write_json_atomic(run / RECORD_FILE, record)
    if phase.trains and (run / "final").is_dir():
        write_json_atomic(run / "final" / RECORD_FILE, record)
    return path


def what_changed(old: dict[str, Any], new: dict[str, Any], phase: phases.Phase, ctx: RunContext) -> str:
    """Why recorded inputs no longer match, in words ("upstream tool_calling_sft changed")."""
    reasons = []
    for name in sorted(set(old.get("upstream") or {}) | set(new.get("upstream") or {})):
        if (old.get("upstream") or {}).get(name) != (new.get("upstream") or {}).get(name):
            reasons.append(f"upstream {name} changed")
    if old.get("quick_test") != new.get("quick_test"):
        reasons.append(f"built by a {'quick test' if old.get('quick_test') else 'production'} run")
    if old.get("config") != new.get("config"):
        reasons.append(f"{ctx.config_file(phase)} changed")
    if old.get("batch") != new.get("batch"):
        reasons.append(f"batch settings changed ({old.get('batch')} -> {new.get('batch')})")
    if old.get("model") != new.get("model"):
        reasons.append("base model changed")
    if old.get("source") != new.get("source") or old.get("local_files") != new.get("local_files"):
        changed = sorted(k for k in set(old.get("local_files") or {}) | set(new.get("local_files") or {})
                         if (old.get("local_files") or {}).get(k) != (new.get("local_files") or {}).get(k))
        reasons.append("source data changed" + (f" ({', '.join(changed)})" if changed else ""))
    if old.get("grpo_tasks") != new.get("grpo_tasks"):
        reasons.append("GRPO task file changed")
    return "; ".join(reasons) or "recorded inputs differ"


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    phase: str
    action: str  # skip | resume | redo | fresh | absent (recorded, not run) | missing (--skip-data without data)
    reason: str
    resume_from: Path | None = None
    warnings: tuple[str, ...] = ()
    status: str | None = None  # absent: the status recorded in quality_gates.json


def decide(name: str, ctx: RunContext, *, redone: frozenset[str] = frozenset()) -> Decision:
    """skip / resume / redo / fresh for one phase. ``redone``: phases this run redoes before it (a dry run knows
    them in advance; at run time a redone upstream shows up as a changed fingerprint)."""
    phase = phases.get(name)
    paths = ctx.paths
    run = paths.run_dir(name)
    if phases.GRPO_TASKS in phase.consumes:
        if not paths.grpo_tasks.is_file():  # writeup §4: the TUI-only pipeline has no execution-reward tasks
            return Decision(name, "absent", f"no task file {paths.grpo_tasks}; run language-specific training to "
                            "generate task data" + (" (--tiny generates a few first)" if ctx.tiny else ""),
                            status="skipped_no_tasks")
        if not ctx.script(phase).is_file():
            return Decision(name, "absent", f"tasks exist at {paths.grpo_tasks} but {ctx.script(phase)} is not "
                            "installed", status="skipped_no_script")
    state = disk_state(phase, run)
    warnings = list(state.warnings)
    if phase.kind == phases.KIND_DATA and ctx.skip_data:
        if state.action != "skip":
            return Decision(name, "missing", f"--skip-data, but {run} is incomplete ({state.reason}); run without "
                            "--skip-data")
        record = read_record(run)
        if record and record.get("fingerprint") != sha256_json(phase_inputs(phase, ctx)):
            warnings.append(f"{run} was made from other inputs "
                            f"({what_changed(record['inputs'], phase_inputs(phase, ctx), phase, ctx)}); "
                            "--skip-data uses it anyway")
        return Decision(name, "skip", f"--skip-data: using {run}", warnings=tuple(warnings))
    if state.action in ("skip", "resume"):
        upstream_redone = [u for u in phase.consumes if u in redone]
        record = read_record(run)
        if upstream_redone:
            return Decision(name, "redo", f"upstream {', '.join(upstream_redone)} is redone first",
                            warnings=tuple(warnings))
        current = phase_inputs(phase, ctx)
        if record is None or "fingerprint" not in record:
            warnings.append(f"{run} has no {RECORD_FILE} (made by an older pipeline or by hand): reused as is, "
                            "and its current inputs are recorded now")
        elif record["fingerprint"] != sha256_json(current):
            return Decision(name, "redo", what_changed(record.get("inputs") or {}, current, phase, ctx),
                            warnings=tuple(warnings))
    return Decision(name, state.action, state.reason, state.resume_from, tuple(warnings))


def decide_all(ctx: RunContext) -> list[Decision]:
    """Every phase's decision in order, a redo carried downstream (what --dry-run prints)."""
    out, redone = [], set()
    for name in phases.NAMES:
        decision = decide(name, ctx, redone=frozenset(redone))
        if decision.action == "redo":
            redone.add(name)
        out.append(decision)
    return out


def move_aside(folder: Path) -> Path:
    """<folder>.stale-<UTC time>: kept until --prune-stale, never deleted otherwise."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = folder.with_name(f"{folder.name}{STALE_MARK}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}{STALE_MARK}{stamp}-{n}")
    os.replace(folder, target)
    return target


# ---------------------------------------------------------------- commands


def phase_command(phase: phases.Phase, ctx: RunContext, resume_from: Path | None = None) -> list[str]:
    """The phase script's command line: paths and the batch profile's values only; every other setting comes from
    the phase's configs/*.yaml, passed as --config."""
    paths = ctx.paths
    run = paths.run_dir(phase.name)
    cmd = [ctx.python, str(ctx.script(phase)), "--config", str(ctx.config_file(phase))]
    if phase.kind == phases.KIND_DATA:
        cmd += ["--output-dir", str(run), "--source", ctx.data_source]
        if ctx.data_source == "local":
            cmd += ["--local-dir", str(ctx.local_data)]
        if ctx.quick_test:
            cmd.append("--quick-test")
        return cmd
    if phase.kind == phases.KIND_MERGE:
        return cmd + ["--adapter_path", str(paths.run_dir(phases.TOOL_CALLING.name) / "final"),
                      "--base_model", ctx.model, "--output_dir", str(run)]
    if phase.kind == phases.KIND_EXPORT:
        cmd += ["--export", "--checkpoints_dir", str(paths.checkpoints), "--model", ctx.model,
                "--merged_model", str(paths.merged_hf), "--output_dir", str(run)]
        return cmd + (["--llama-cpp-dir", ctx.llama_cpp_dir] if ctx.llama_cpp_dir else [])
    batch = ctx.batch(phase)
    if phase is phases.TOOL_CALLING:
        cmd += ["--model_name_or_path", ctx.model, "--train_data_path", str(paths.train_data(phase)),
                "--max_seq_length", str(batch.seq)]
    elif phase is phases.AGENT_SFT:
        cmd += ["--base_model", str(paths.merged_hf), "--train_data_path", str(paths.train_data(phase)),
                "--max_seq_length", str(batch.seq)]
    elif phase is phases.IPO:
        cmd += ["--checkpoint", str(paths.run_dir(phases.AGENT_SFT.name) / "final"), "--base_model",
                str(paths.merged_hf), "--train_data_path", str(paths.train_data(phase)), "--max_length",
                str(batch.seq)]
    elif phase is phases.GRPO:
        cmd += ["--checkpoint", str(grpo_policy(paths)), "--base_model", str(paths.merged_hf), "--task_source",
                str(paths.grpo_tasks), "--language", ctx.grpo_language]
        if ctx.tiny or ctx.batch_profile in FIXED_PROFILES:
            # The one exception to "paths and batch values only", kept from the GRPO phase's demo wiring: a random-
            # weight model (the tiny demo, and the smoke profile's 2-layer GPU model) earns reward 0 on every
            # completion, so with equal rewards GRPO's advantage is 0 and TRL's entropy bonus is what moves the
            # adapter; 16-token completions keep generation cheap (the smoke run on CPU: 307 s per GRPO step at
            # grpo.yaml's 2,048 tokens).
            cmd += ["--max_completion_length", "16", "--entropy_coef", "0.01"]
    accum = batch.accum
    if ctx.gpus > 1 and phase in DATA_PARALLEL:
        cmd = data_parallel_launcher(ctx) + cmd[1:]
        accum = per_gpu_accum(batch.accum, ctx.gpus)
    cmd += ["--per_device_train_batch_size", str(batch.batch), "--gradient_accumulation_steps", str(accum),
            "--max_steps", str(batch.max_steps), "--output_dir", str(run)]
    save_steps = ctx.save_steps or batch.save_steps
    if save_steps is not None:
        cmd += ["--save_steps", str(save_steps)]
    if ctx.report_to:
        cmd += ["--report_to", ctx.report_to]
    if resume_from is not None:
        cmd += ["--resume_from_checkpoint", str(resume_from)]
    return cmd


# Phases that run data-parallel under --gpus N: every training phase (13, 14, 17, 18). Rank 0 alone writes final/
# in each; tests/test_multiprocess.py checks 2 gloo processes against 1 with the same global batch for Phase 1
# (SFT, also Phase 2's trainer) and IPO, and that a failing rank stops the others. GRPO's 2-process run is checked
# to finish there too (TRL spreads each task's generations over the ranks; the generation batch is global).
DATA_PARALLEL = phases.TRAINED


def data_parallel_launcher(ctx: RunContext) -> list[str]:
    """``accelerate launch`` with the repo's DDP config (configs/accelerate/ddp.yaml), one process per GPU."""
    return [ctx.python, "-m", "accelerate.commands.launch", "--config_file",
            str(ctx.configs_dir / "accelerate" / "ddp.yaml"), "--num_processes", str(ctx.gpus)]


def grpo_policy(paths: PipelinePaths) -> Path:
    """The adapter GRPO continues: the newest finished one before it (IPO's, else agent SFT's)."""
    for phase in reversed(phases.TRAINED[:phases.TRAINED.index(phases.GRPO)]):
        final = paths.run_dir(phase.name) / "final"
        if final_adapter_problem(final) is None:
            return final
    return paths.run_dir(phases.IPO.name) / "final"


def gate_dir(phase: phases.Phase, paths: PipelinePaths) -> Path | None:
    if phase.gate_key is None:
        return None
    run = paths.run_dir(phase.name)
    return run / "hf" if phase.kind == phases.KIND_MERGE else run


def needs_token(phase: phases.Phase, ctx: RunContext) -> bool:
    """HF_TOKEN goes only to processes that may download: hub data prep, and the phases reading a hub --model."""
    if phase.kind == phases.KIND_DATA:
        return ctx.data_source == "hub"
    return phases.MODEL in phase.consumes and not ctx.model_is_local


def disk_stage(phase: phases.Phase, ctx: RunContext) -> str:
    if phase.kind == phases.KIND_DATA:
        return "data" if ctx.data_source == "hub" else "none"
    if phase.kind in (phases.KIND_MERGE, phases.KIND_EXPORT):
        return phase.name  # the disk stage is named after the phase
    return "download" if phases.MODEL in phase.consumes and not ctx.model_is_local else "none"


def step(name: str, ctx: RunContext) -> dict[str, Any]:
    """Decide one phase at run time and prepare it: move stale output aside, record the inputs it starts from.
    Returns the shell variables the orchestrator acts on."""
    phase = phases.get(name)
    decision = decide(name, ctx)
    run = ctx.paths.run_dir(name)
    moved = None
    if decision.action == "redo":
        moved = move_aside(run) if run.exists() else None
    if decision.action in ("redo", "fresh", "resume") or (decision.action == "skip" and read_record(run) is None
                                                            and not ctx.skip_data):
        write_record(phase, ctx)
    ctx.paths.logs.mkdir(parents=True, exist_ok=True)
    with open(ctx.paths.logs / DECISIONS, "a") as fh:
        fh.write(json.dumps({"phase": name, "action": decision.action, "reason": decision.reason,
                             "moved_to": str(moved) if moved else None}) + "\n")
    runs = decision.action in ("redo", "fresh", "resume")
    gate = gate_dir(phase, ctx.paths)
    return {"ACTION": decision.action, "REASON": decision.reason, "MOVED": moved, "STATUS": decision.status,
            "TOKEN": "with-token" if needs_token(phase, ctx) else "no-token", "STAGE": disk_stage(phase, ctx),
            "GATE_DIR": gate, "WARNINGS": "\n".join(decision.warnings),
            "CMD": phase_command(phase, ctx, decision.resume_from) if runs else []}


def step_shell(values: dict[str, Any]) -> str:
    cmd = values.pop("CMD")
    return shell_assignments(values) + "\nCMD=(" + " ".join(shlex.quote(a) for a in cmd) + ")"


# ---------------------------------------------------------------- preflight: every input checked before any phase


def preflight_problems(ctx: RunContext, gates_config: Path, *, dry_run: bool = False) -> list[str]:
    """What would make a phase fail later for a reason known now; empty when the run can start. A dry run plans from
    a config.json alone, so it does not ask for weights."""
    from pipeline_lib.gates import load_gate_specs
    from pipeline_lib.profiles import load_profiles

    problems = []
    model = Path(ctx.model)
    if not ctx.tiny and model.is_dir() and not (model / "config.json").is_file():
        problems.append(f"--model {ctx.model}: the folder has no config.json (a model folder needs config.json and "
                        "its *.safetensors weights)")
    elif not ctx.tiny and not dry_run and model.is_dir() and not list(model.glob("*.safetensors")):
        problems.append(f"--model {ctx.model}: no *.safetensors weights in the folder (config.json alone is enough "
                        "for --dry-run, not for training)")
    import yaml

    # A malformed file is a problem to report, whichever way it is malformed (not YAML, or the wrong shape).
    malformed = (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError)
    try:
        load_gate_specs(ctx.gate_profile, gates_config)
    except malformed as exc:
        problems.append(f"--gates-config {gates_config}: {exc.__class__.__name__}: {exc}")
    try:
        load_profiles(ctx.configs_dir / "batch_profiles.yaml")
    except malformed as exc:
        problems.append(f"batch profiles {ctx.configs_dir / 'batch_profiles.yaml'}: {exc.__class__.__name__}: {exc}")
    for phase in phases.PHASES:
        if phase is phases.GRPO and not (ctx.paths.grpo_tasks.is_file() and ctx.script(phase).is_file()):
            continue  # GRPO is skipped (recorded) without tasks or its script
        config = ctx.config_file(phase)
        try:
            if not isinstance(yaml.safe_load(config.read_text()), dict):
                problems.append(f"{config}: not a YAML mapping")
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{phase.name} config {config}: {exc.__class__.__name__}: {exc}")
        if not ctx.script(phase).is_file():
            problems.append(f"{phase.name}: script {ctx.script(phase)} missing")
    if ctx.tiny and not ctx.local_data.is_dir():
        problems.append(f"--tiny reads {ctx.local_data}: no such folder (scripts/make_samples.py writes it)")
    if ctx.llama_cpp_dir and not (Path(ctx.llama_cpp_dir) / "convert_hf_to_gguf.py").is_file():
        problems.append(f"LLAMA_CPP_DIR={ctx.llama_cpp_dir}: no convert_hf_to_gguf.py in it")
    return problems


# ---------------------------------------------------------------- model config and disk


def resolve_model_config(model: str) -> Path | None:
    """config.json of a local folder, a hub id already in the HF cache, or the copy shipped in configs/<slug>/."""
    local = Path(model)
    if local.is_dir():
        return local / "config.json" if (local / "config.json").is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        if isinstance(cached, str):
            return Path(cached)
    except Exception:  # noqa: BLE001 - an unusable cache only means "not cached"
        pass
    shipped = REPO_ROOT / "configs" / model_slug(model) / "config.json"
    return shipped if shipped.is_file() else None


def model_download_needed(model: str) -> bool:
    if Path(model).is_dir():
        return False
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(model, local_files_only=True))
        return not any(snapshot.glob("*.safetensors"))
    except Exception:  # noqa: BLE001 - not in the cache (or no hub library): it must be downloaded
        return True


@dataclass(frozen=True)
class ModelSize:
    parameters: int
    dtype: str
    download_bytes: int  # the released checkpoint (MXFP4 experts for gpt-oss)

    @property
    def full_bytes(self) -> int:
        """The merged/exported HF model: every parameter in the config's dtype (bf16 for GPT-OSS-20B)."""
        return self.parameters * DTYPE_BYTES.get(self.dtype, 2)


def model_size(config_path: str | os.PathLike, cache_dir: Path | None = None) -> ModelSize:
    """Parameter count (meta-device model) and sizes; cached in ``cache_dir`` by config hash, since building the
    meta model costs ~10 s of imports and the pipeline asks before merge and again before export."""
    import hashlib

    config_path = Path(config_path)
    text = config_path.read_text()
    cache = cache_dir / f".model_size_{hashlib.sha256(text.encode()).hexdigest()[:16]}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return ModelSize(**json.loads(cache.read_text()))
    from pipeline_lib.modeling import build_meta_model

    config = json.loads(text)
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16").removeprefix("torch.")
    named = [(n, p.numel()) for n, p in build_meta_model(config_path.parent).named_parameters()]
    total = sum(n for _, n in named)
    download = total * DTYPE_BYTES.get(dtype, 2)
    if (config.get("quantization_config") or {}).get("quant_method") == "mxfp4":
        experts = sum(n for name, n in named if name.endswith(("experts.gate_up_proj", "experts.down_proj")))
        download = int(experts * MXFP4_BYTES_PER_PARAM + (total - experts) * DTYPE_BYTES.get(dtype, 2))
    size = ModelSize(total, dtype, download)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(asdict(size)))
    return size


def free_bytes(path: str | os.PathLike) -> int:
    path = Path(path)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def stage_need(stage: str, size: ModelSize) -> int:
    needs = {"download": size.download_bytes, phases.MERGE.name: size.full_bytes,
             phases.EXPORT.name: size.full_bytes + int(size.parameters * GGUF_BYTES_PER_PARAM)}
    return int(needs[stage] * HEADROOM)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def disk_preflight(stage: str, model: str, target: Path, cache_dir: Path | None = None) -> tuple[bool, str]:
    """(enough space?, message) for the data/model download (HF cache), merge or export (checkpoints/) stage."""
    if stage == "data":
        cache = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
        free = free_bytes(cache)
        need = int(DATA_DOWNLOAD_BYTES * HEADROOM)
        return free >= need, f"disk (data download): need ~{gib(need)}, free {gib(free)} at {cache}"
    if stage == "download":
        if not model_download_needed(model):
            return True, f"disk: {model} needs no download"
        target = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    config = resolve_model_config(model)
    free = free_bytes(target)
    if config is None:
        return True, f"disk: no config.json for {model} yet, cannot estimate the {stage} need; {gib(free)} free"
    need = stage_need(stage, model_size(config, cache_dir))
    msg = f"disk ({stage}): need ~{gib(need)}, free {gib(free)} at {target}"
    return free >= need, msg


def stale_report(paths: PipelinePaths) -> tuple[int, str]:
    """(bytes held by <dir>.stale-* folders, a sentence for the disk lines; empty when there are none)."""
    from pipeline_lib.gates import folder_bytes

    stale = paths.stale_folders()
    if not stale:
        return 0, ""
    held = sum(folder_bytes(p) for p in stale)
    return held, (f"; {len(stale)} stale folder(s) ({', '.join(p.name for p in stale)}) hold {gib(held)}: "
                  "--prune-stale deletes them")


def prune_stale(paths: PipelinePaths) -> list[Path]:
    stale = paths.stale_folders()
    for folder in stale:
        shutil.rmtree(folder)
    return stale


# ---------------------------------------------------------------- dry-run plan


def phase_lora(phase: phases.Phase, ctx: RunContext) -> tuple[int | None, bool, str]:
    """(LoRA rank, include_experts, where from) of a training phase, read from its YAML; IPO and GRPO keep training
    the adapter agent SFT made, so they report agent SFT's."""
    import yaml

    source = phase if not phase.on_merged_model or phase is phases.AGENT_SFT else phases.AGENT_SFT
    try:
        config = yaml.safe_load(ctx.config_file(source).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None, True, str(ctx.config_file(source))
    rank = config.get("lora_r")
    return (int(rank) if isinstance(rank, int) else None), bool(config.get("include_experts", True)), \
        str(ctx.config_file(source))


def trainable_count(config: Path | Any, rank: int, include_experts: bool = True) -> str:
    try:
        from pipeline_lib.unsloth_utils import count_lora_trainable

        return f"{count_lora_trainable(config, rank, include_experts=include_experts):,}"
    except Exception as exc:  # noqa: BLE001 - the plan still prints; the reason is shown
        return f"unavailable ({exc.__class__.__name__}: {exc})"


def estimate_specs(ctx: RunContext) -> list[Any]:
    """The phases as the cost estimate sees them (pipeline_lib.estimate.PhaseSpec), in run order."""
    from pipeline_lib.estimate import PhaseSpec
    from pipeline_lib.unsloth_utils import is_mxfp4_checkpoint

    # Phase 1 trains the run's model (the released one is MXFP4); later phases train the merged bf16 model
    mxfp4 = bool(ctx.model) and is_mxfp4_checkpoint(ctx.model)
    return [PhaseSpec(p.name, p.kind, p.dataset, ctx.config_file(p) if p.trains else None, pairs=p is phases.IPO,
                      mxfp4=mxfp4 and p is phases.TOOL_CALLING)
            for p in phases.PHASES]


def run_estimate(ctx: RunContext, *, card: str | None, gpus: int = 1,
                 skipped: set[str] = frozenset()) -> tuple[list, str, str]:
    """(per-phase estimates, card, why that card) for this run."""
    from pipeline_lib.estimate import detect_card, estimate_run

    paths = ctx.paths
    card_reason = "--card"
    if card is None:
        card, card_reason = detect_card(ctx.tiny)
    config = resolve_model_config(ctx.model)
    if config is None and ctx.tiny:
        from pipeline_lib.tiny_model import tiny_gpt_oss_config

        config = tiny_gpt_oss_config()
    parameters = model_size(config).parameters if isinstance(config, Path) else None
    skip = set(skipped) | ({phases.GRPO.name} if not paths.grpo_tasks.is_file() else set())
    estimates = estimate_run(estimate_specs(ctx), data_dir=paths.data, profile=ctx.batch_profile,
                             quick_test=ctx.quick_test, parameters=parameters, card=card, gpus=gpus, skipped=skip)
    return estimates, card, card_reason


def estimate_lines(ctx: RunContext, *, card: str | None, gpus: int = 1) -> list[str]:
    from pipeline_lib.estimate import format_estimates

    estimates, card, reason = run_estimate(ctx, card=card, gpus=gpus)
    from pipeline_lib.profiles import FIXED_PROFILES

    label = ctx.batch_profile + (" + quick test" if ctx.quick_test and ctx.batch_profile not in FIXED_PROFILES else "")
    return format_estimates(estimates, card, reason, label, unmeasured=[])


def write_run_estimate(out: Path, ctx: RunContext, *, card: str | None, gpus: int = 1) -> str:
    """Save the estimate the progress lines (pipeline_lib.live) and the summary compare against; return its total."""
    from pipeline_lib.estimate import estimates_json
    from pipeline_lib.progress import fmt_duration

    estimates, card, reason = run_estimate(ctx, card=card, gpus=gpus)
    write_json_atomic(out, {"card": card, "card_reason": reason, "profile": ctx.batch_profile,
                            "quick_test": ctx.quick_test, "gpus": gpus, "order": [e.phase for e in estimates],
                            "phases": estimates_json(estimates)})
    known = sum(e.seconds for e in estimates if e.seconds is not None)
    missing = [e.phase for e in estimates if e.seconds is None]
    return (f"estimate: ~{fmt_duration(known)} of training on {card} ({reason})"
            + (f" + no measurement for {', '.join(missing)}" if missing else "") + "; details in --dry-run")


def phase_start_line(phase: str, estimate_path: Path, elapsed: float) -> str:
    """'[progress] phase 4/7 agent_sft starting | run elapsed 1h02m | this phase ~6.1h | run ETA ~9.3h'."""
    from pipeline_lib.progress import fmt_duration, read_run_estimate, remaining_after

    est = read_run_estimate(estimate_path) or {}
    order = est.get("order") or list(PHASES)
    where = f"phase {order.index(phase) + 1}/{len(order)} {phase}" if phase in order else f"phase {phase}"
    this = ((est.get("phases") or {}).get(phase) or {}).get("seconds")
    later, unmeasured = remaining_after(est, phase) if est else (0.0, [])
    parts = [f"[progress] {where} starting", f"run elapsed {fmt_duration(elapsed)}"]
    if this is None:
        parts.append("this phase: no measurement")
        unmeasured = [phase, *unmeasured]
    else:
        parts.append(f"this phase ~{fmt_duration(this)}")
    tail = f" + unmeasured {', '.join(unmeasured)}" if unmeasured else ""
    parts.append(f"run ETA ~{fmt_duration((this or 0) + later)}{tail}")
    return " | ".join(parts)


def plan(ctx: RunContext, *, card: str | None = None, gpus: int = 1) -> str:
    from pipeline_lib.profiles import FIXED_PROFILES

    fixed = ctx.batch_profile in FIXED_PROFILES
    paths = ctx.paths
    model = ctx.model
    config = resolve_model_config(model)
    lines = ["DRY RUN - nothing is trained, downloaded or written.",
             f"model: {model}  (config: {config or 'not available locally'})",
             f"batch profile: {ctx.batch_profile}{' + quick test' if ctx.quick_test and not fixed else ''}; "
             f"workdir: {ctx.workdir}; state: {paths.base} (data, checkpoints, logs)"]
    size = None
    config_for_counts: Any = config
    if config is not None:
        size = model_size(config)
        lines.append(f"parameters: {size.parameters:,} ({size.dtype})")
    elif ctx.tiny:
        from pipeline_lib.tiny_model import tiny_gpt_oss_config

        config_for_counts = tiny_gpt_oss_config()
        lines.append("tiny model not built yet: scripts/make_tiny_gpt_oss.py builds it first")
    lines.append("phases (skip: finished, inputs unchanged; resume: from a checkpoint; redo: inputs changed, old "
                 "output moved aside; fresh: nothing yet):")
    for decision in decide_all(ctx):
        phase = phases.get(decision.phase)
        action = "SKIP" if decision.action == "absent" else decision.action.upper()
        lines.append(f"  {phase.name:<17} {action:<6} {decision.reason}")
        lines.extend(f"  {'':<17} warning: {w}" for w in decision.warnings)
        detail = ""
        if phase.kind == phases.KIND_DATA and decision.action != "absent":
            source = f"local samples {ctx.local_data}" if ctx.data_source == "local" else "hub datasets (writeup §5)"
            detail = f"reads: {source}; writes {paths.data}"
        elif phase.trains and decision.action != "absent":
            b = ctx.batch(phase)
            steps = "epochs from the phase config" if b.max_steps == -1 else f"max_steps {b.max_steps}"
            rank, experts, source = phase_lora(phase, ctx)
            if rank is None:
                lora = f"LoRA rank unreadable from {source}"
            elif config_for_counts is None:
                lora = f"LoRA r{rank} ({source})"
            else:
                inherited = "" if source.endswith(phase.config) else f" (agent SFT's adapter, {Path(source).name})"
                lora = f"LoRA r{rank}, trainable {trainable_count(config_for_counts, rank, experts)}{inherited}"
            reads = paths.grpo_tasks if phase.dataset is None else paths.train_data(phase)
            detail = (f"reads {reads}; batch {b.batch} x accum {b.accum} = {b.effective_batch}, seq {b.seq}, "
                      f"{steps}; {lora}")
            if ctx.gpus > 1 and phase in DATA_PARALLEL:
                a = per_gpu_accum(b.accum, ctx.gpus)
                detail += (f"; {ctx.gpus} GPUs (DDP, accelerate launch): per GPU batch {b.batch} x accum {a}, "
                           f"global batch {b.batch * a * ctx.gpus}")
        elif phase.kind in (phases.KIND_MERGE, phases.KIND_EXPORT):
            detail = f"writes {paths.run_dir(phase.name)}"
        if detail:
            lines.append(f"  {'':<17} {detail}")
    held, stale_note = stale_report(paths)
    if size is not None:
        need_merge, need_export = stage_need(phases.MERGE.name, size), stage_need(phases.EXPORT.name, size)
        free = free_bytes(paths.checkpoints)
        verdict = "OK" if free >= need_merge + need_export else "NOT ENOUGH"
        lines.append(f"disk: merge ~{gib(need_merge)} (params x {size.dtype}) + export ~{gib(need_export)} "
                     f"(HF + GGUF estimate) = {gib(need_merge + need_export)}; free {gib(free)} -> {verdict}"
                     + stale_note)
        if model_download_needed(model):
            lines.append(f"download: ~{gib(size.download_bytes)} into the HF cache")
    elif stale_note:
        lines.append("disk" + stale_note)
    lines.extend(estimate_lines(ctx, card=card, gpus=gpus))
    return "\n".join(lines)


# ---------------------------------------------------------------- summary report


def read_jsonl_by_phase(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            out[entry["phase"]] = entry
    return out


def read_run_record(log_dir: Path) -> dict[str, dict[str, Any]]:
    return read_jsonl_by_phase(log_dir / RUN_RECORD)


def plot_loss_curves(paths: PipelinePaths, out: Path) -> Path | None:
    curves = {}
    for phase in TRAINED_PHASES:
        state = latest_trainer_state(paths.run_dir(phase))
        if state is not None:
            history = loss_history(json.loads(state.read_text()))
            if history:
                curves[phase] = history
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3), squeeze=False)
    for ax, (phase, history) in zip(axes[0], curves.items(), strict=True):
        ax.plot([s for s, _ in history], [v for _, v in history])
        ax.set_title(phase)
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def trained_tokens(run_dir: Path) -> int | None:
    """Tokens the phase trained (TrainerState.num_input_tokens_seen, non-padding), from its newest state."""
    state = latest_trainer_state(run_dir)
    if state is None:
        return None
    try:
        return int(json.loads(state.read_text()).get("num_input_tokens_seen") or 0) or None
    except (OSError, ValueError):
        return None


def cost_rows(paths: PipelinePaths, record: dict[str, dict[str, Any]]) -> list[str]:
    """Measured tokens, wall time and GPU-hours beside the estimate each phase was given (configs/throughput.yaml
    can be corrected from this table)."""
    from pipeline_lib.progress import fmt_duration, read_run_estimate

    est = read_run_estimate(paths.logs / RUN_ESTIMATE) or {}
    gpus = int(est.get("gpus") or 1)
    rows = [f"cost (estimate for {est.get('card', 'no estimate written')}, {gpus} GPU(s)):", "",
            "| phase | tokens trained | wall time | GPU-hours | tokens / wall s | est. tokens | est. time |",
            "|---|---|---|---|---|---|---|"]
    for phase in PHASES:
        entry = record.get(phase, {})
        seconds = entry.get("seconds")
        tokens = trained_tokens(paths.run_dir(phase)) if phase in TRAINED_PHASES else None
        if entry.get("status") in ("skipped", None):
            tokens_cell, rate = "-", "-"
        else:
            tokens_cell = f"{tokens:,}" if tokens else "-"
            rate = f"{tokens / seconds:,.0f}" if tokens and seconds else "-"
        e = (est.get("phases") or {}).get(phase) or {}
        est_tokens = f"{e['tokens']:,}" if e.get("tokens") else "-"
        est_time = fmt_duration(e.get("seconds")) if e else "-"
        wall = "-" if seconds is None else fmt_duration(seconds)
        hours = "-" if seconds is None else f"{seconds * gpus / 3600:.3f}"
        rows.append(f"| {phase} | {tokens_cell} | {wall} | {hours} | {rate} | {est_tokens} | {est_time} |")
    return rows


def summary(ctx: RunContext) -> str:
    from pipeline_lib.evaluation import BASE_STAGE, summary_section
    from pipeline_lib.progress import fmt_duration

    paths = ctx.paths
    record = read_run_record(paths.logs)
    decisions = read_jsonl_by_phase(paths.logs / DECISIONS)
    gates = read_gates(paths.gates_file)
    rows = ["| phase | status | why | duration | gate | value | threshold | result |",
            "|---|---|---|---|---|---|---|---|"]
    for phase in PHASES:
        entry = record.get(phase, {})
        decision = decisions.get(phase, {})
        why = (f"{decision['action']}: {decision.get('reason', '')}" if decision else "").replace("|", "/")
        gate = gates.get(GATE_KEYS.get(phase, ""), {})
        value = (gate.get("loss") or gate.get("size_gib") or gate.get("reward_accuracy") or gate.get("status")
                 or (f"hf {gate['hf']}, gguf {gate['gguf']}" if "hf" in gate else ""))
        label = f"{gate['metric']} [{gate.get('type')}]" if "metric" in gate else ""
        result = gate.get("status") or {"true": "PASS", "false": "FAIL"}.get(gate.get("passed", ""), "")
        if result == "FAIL" and gate.get("type") == "SOFT":
            result = "WARN (soft)"
        seconds = entry.get("seconds")
        duration = "" if seconds is None else fmt_duration(seconds)
        rows.append(f"| {phase} | {entry.get('status', 'not reached')} | {why} | {duration} | "
                    f"{label} | {value} | {gate.get('threshold', '')} | {result} |")
    png = plot_loss_curves(paths, paths.logs / "loss_curves.png")
    cost = cost_rows(paths, record)
    evaluation = summary_section(paths.logs / "eval", [BASE_STAGE, *TRAINED_PHASES])  # stage x metric, delta to base
    text = "\n".join(["# TUI pipeline summary", "", f"model: {ctx.model}; state: {paths.base}", "", *rows, "", *cost,
                      f"loss curves: {png}" if png else "loss curves: none (no trainer_state.json yet)",
                      f"gates: {paths.gates_file}", *([""] + evaluation if evaluation else [])])
    paths.logs.mkdir(parents=True, exist_ok=True)
    (paths.logs / "summary.md").write_text(text + "\n")
    return text


# ---------------------------------------------------------------- CLI


def add_context_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-profile", default="balanced")
    parser.add_argument("--quick-test", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--grpo-language", default="rust")
    parser.add_argument("--configs-dir", type=Path, default=CONFIGS_DIR)
    parser.add_argument("--scripts-dir", type=Path, default=SCRIPTS_DIR)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--llama-cpp-dir", default=None)
    parser.add_argument("--report-to", default=None)
    parser.add_argument("--save-steps", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=1)


def context_from(args: argparse.Namespace) -> RunContext:
    return RunContext(workdir=args.workdir, model=args.model, profile=args.batch_profile, quick_test=args.quick_test,
                      tiny=args.tiny, skip_data=args.skip_data, grpo_language=args.grpo_language,
                      configs_dir=args.configs_dir, scripts_dir=args.scripts_dir, python=args.python,
                      llama_cpp_dir=args.llama_cpp_dir or None, report_to=args.report_to or None,
                      save_steps=args.save_steps, gpus=args.gpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Helpers for scripts/run_tui_pipeline.sh")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {}
    for name in ("paths", "preflight", "step", "record", "disk", "prune-stale", "plan", "estimate", "summary"):
        commands[name] = sub.add_parser(name)
        add_context_flags(commands[name])
    for name in ("step", "record"):
        commands[name].add_argument("phase", choices=phases.NAMES)
    commands["preflight"].add_argument("--gates-config", required=True, type=Path)
    commands["preflight"].add_argument("--dry-run", action="store_true")
    for name in ("plan", "estimate"):
        commands[name].add_argument("--card", default=None, help="GPU the estimate is for (default: detected)")
    commands["estimate"].add_argument("--out", required=True, type=Path)
    progress = sub.add_parser("progress", help="one whole-run progress line at a phase start")
    progress.add_argument("--phase", required=True)
    progress.add_argument("--estimate", required=True, type=Path)
    progress.add_argument("--elapsed", required=True, type=float, help="seconds since the run started")
    commands["disk"].add_argument("--stage", required=True, choices=("data", "download", phases.MERGE.name,
                                                                         phases.EXPORT.name))
    args = parser.parse_args(argv)
    if args.command == "progress":
        print(phase_start_line(args.phase, args.estimate, args.elapsed))
        return 0
    ctx = context_from(args)

    if args.command == "paths":
        print(shell_assignments(ctx.paths.shell()))
    elif args.command == "preflight":
        problems = preflight_problems(ctx, args.gates_config, dry_run=args.dry_run)
        for problem in problems:  # one line each (a YAML error spans several): the run's last line quotes one
            print(" ".join(problem.split()))
        return 1 if problems else 0
    elif args.command == "step":
        values = step(args.phase, ctx)
        for warning in filter(None, values.pop("WARNINGS").splitlines()):
            print(f"WARNING: {warning}", file=sys.stderr)
        print(step_shell(values))
    elif args.command == "record":
        print(write_record(phases.get(args.phase), ctx))
    elif args.command == "disk":
        target = ctx.paths.checkpoints
        ok, msg = disk_preflight(args.stage, ctx.model, target, cache_dir=ctx.paths.logs)
        msg += stale_report(ctx.paths)[1]
        print(msg if ok else f"NOT ENOUGH DISK SPACE - {msg}")
        return 0 if ok else 1
    elif args.command == "prune-stale":
        for folder in prune_stale(ctx.paths):
            print(f"deleted stale folder {folder}")
    elif args.command == "plan":
        print(plan(ctx, card=args.card, gpus=ctx.gpus))
    elif args.command == "estimate":
        print(write_run_estimate(args.out, ctx, card=args.card, gpus=ctx.gpus))
    elif args.command == "summary":
        print(summary(ctx))
    return 0


if __name__ == "__main__":
    sys.exit(main())
