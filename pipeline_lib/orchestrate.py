"""Python side of scripts/run_tui_pipeline.sh: paths, resume decisions, disk preflight, dry-run plan, summary.

The bash orchestrator runs the phases; every decision that needs to read a file is made here, so it is tested:

    python -m pipeline_lib.orchestrate paths --workdir W --model M [--grpo-language rust]   # shell assignments
    python -m pipeline_lib.orchestrate state training|merge|export|data DIR                 # shell assignments
    python -m pipeline_lib.orchestrate disk --stage download|merge|export --model M --workdir W
    python -m pipeline_lib.orchestrate plan --workdir W --model M --profile balanced [...]  # --dry-run
    python -m pipeline_lib.orchestrate summary --workdir W [--profile P]                    # logs/summary.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.gates import DTYPE_BYTES, GATE_KEYS, read_gates, read_manifest, safetensors_problem
from pipeline_lib.merge import merge_manifest_passed
from pipeline_lib.metrics import latest_trainer_state, loss_history

REPO_ROOT = Path(__file__).resolve().parents[1]
PHASES = ("data_prep", "tool_calling_sft", "merge", "agent_sft", "ipo", "grpo", "export")
TRAINED_PHASES = ("tool_calling_sft", "agent_sft", "ipo", "grpo")
LORA_RANKS = {"tool_calling_sft": 64, "agent_sft": 128}  # writeup §3; IPO/GRPO inherit agent SFT's adapter
DATASETS = ("tool_calling", "agent_traj", "preference")
RUN_RECORD = ".run_phases.jsonl"
# Data download estimate (hub source): the eight datasets of writeup §5 as parquet/json plus their Arrow copies
# in the datasets cache. Quick test downloads the same files (split slicing happens after download).
DATA_DOWNLOAD_BYTES = 10 * 2**30
# GGUF estimate per parameter: the converter's bf16/f16 intermediate (2 bytes) + Q4_K_M, which on the 20B model
# falls back to Q5_0/Q8_0 for most tensors (2880 % 256 != 0, FINDINGS §4: ~0.75 bytes) + MXFP4_MOE (~0.6 bytes).
GGUF_BYTES_PER_PARAM = 2.0 + 0.75 + 0.6
MXFP4_BYTES_PER_PARAM = 4.25 / 8  # 4-bit values + one shared 8-bit scale per 32 (the released MoE weights)
HEADROOM = 1.05  # 5% over the estimate


# ---------------------------------------------------------------- paths


def model_slug(model: str) -> str:
    """Last path component lowercased: openai/gpt-oss-20b -> gpt-oss-20b, checkpoints/tiny-gpt-oss -> tiny-gpt-oss."""
    return Path(model.rstrip("/")).name.lower()


@dataclass(frozen=True)
class PipelinePaths:
    workdir: Path
    slug: str
    grpo_language: str = "rust"

    @property
    def data(self) -> Path:
        return self.workdir / "data" / "coding_tui"

    @property
    def checkpoints(self) -> Path:
        return self.workdir / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def run_dir(self, phase: str) -> Path:
        names = {"tool_calling_sft": "tool_calling_sft", "agent_sft": "agent_sft", "ipo": "agent_sft_ipo",
                 "grpo": "agent_sft_grpo", "merge": f"{self.slug}-coding-tui-merged",
                 "export": f"{self.slug}-coding-tui-export"}
        return self.checkpoints / names[phase]

    @property
    def merged_hf(self) -> Path:
        return self.run_dir("merge") / "hf"

    @property
    def grpo_tasks(self) -> Path:
        return self.workdir / "data" / self.grpo_language / "grpo" / "tasks.jsonl"

    @property
    def gates_file(self) -> Path:
        return self.logs / "quality_gates.json"

    def shell(self) -> dict[str, str]:
        return {"DATA_DIR": str(self.data), "CKPT_DIR": str(self.checkpoints), "LOG_DIR": str(self.logs),
                "SLUG": self.slug, "TOOL_DIR": str(self.run_dir("tool_calling_sft")),
                "MERGED_DIR": str(self.run_dir("merge")), "MERGED_HF": str(self.merged_hf),
                "AGENT_DIR": str(self.run_dir("agent_sft")), "IPO_DIR": str(self.run_dir("ipo")),
                "GRPO_DIR": str(self.run_dir("grpo")), "EXPORT_DIR": str(self.run_dir("export")),
                "GRPO_TASKS": str(self.grpo_tasks), "GATES_FILE": str(self.gates_file)}


def shell_assignments(values: dict[str, Any]) -> str:
    return "\n".join(f"{k}={shlex.quote('' if v is None else str(v))}" for k, v in values.items())


# ---------------------------------------------------------------- checkpoints and phase state


def _step(path: Path) -> int:
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


def find_resume_checkpoint(run_dir: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """Newest valid checkpoint-N under run_dir and a warning for every newer one that is not valid."""
    warnings = []
    for ckpt in sorted(Path(run_dir).glob("checkpoint-*"), key=_step, reverse=True):
        if _step(ckpt) < 0 or not ckpt.is_dir():
            continue
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt, warnings
        warnings.append(f"{ckpt.name} is not resumable ({problem}); falling back to an earlier checkpoint")
    return None, warnings


@dataclass(frozen=True)
class PhaseState:
    action: str  # skip | resume | fresh
    reason: str
    resume_from: Path | None = None
    warnings: tuple[str, ...] = ()

    def shell(self) -> str:
        return shell_assignments({"ACTION": self.action, "REASON": self.reason, "RESUME_FROM": self.resume_from})


def training_state(run_dir: str | os.PathLike) -> PhaseState:
    """Writeup §2 auto-resume: final/adapter_config.json -> skip; checkpoint-* -> resume (newest VALID); else fresh.

    A final/ whose adapter weights do not load (killed while saving) does not count as finished.
    """
    run = Path(run_dir)
    final = run / "final"
    warnings = []
    if (final / "adapter_config.json").is_file():
        weights = sorted(final.glob("adapter_model*.safetensors"))
        problem = safetensors_problem(weights[0]) if weights else "adapter_model.safetensors missing"
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
    manifest = read_manifest(Path(merged_dir) / "hf" / "manifest.json")
    # The merge gate's own rule (every check passed); read_manifest first so a truncated manifest means "fresh".
    if manifest is not None and merge_manifest_passed(manifest):
        return PhaseState("skip", "hf/manifest.json says passed")
    return PhaseState("fresh", "no passed hf/manifest.json" if manifest is None else "hf/manifest.json not passed")


def export_state(export_dir: str | os.PathLike) -> PhaseState:
    export = Path(export_dir)
    manifest = read_manifest(export / "manifest.json")
    if manifest is None:
        return PhaseState("fresh", "no export manifest.json")
    hf_config = (export / "hf" / "config.json").is_file()
    if manifest.get("passed") is True and hf_config:
        return PhaseState("skip", "export manifest.json complete (passed)")
    return PhaseState("fresh", "export manifest.json incomplete" + ("" if hf_config else " (missing hf/config.json)"))


def data_state(data_dir: str | os.PathLike, *, source: str | None = None,
               quick_test: bool | None = None) -> PhaseState:
    """Skip when the three datasets and prep_report.json exist (the data prep script keeps them too, writeup §4);
    warn when they were built for another source or quick-test setting."""
    data = Path(data_dir)
    missing = [name for name in DATASETS if not (data / name / "train" / "dataset_info.json").is_file()]
    if not missing and (data / "prep_report.json").is_file():
        report = read_manifest(data / "prep_report.json") or {}
        built = (report.get("source"), report.get("quick_test"))
        wanted = (source if source is not None else built[0], quick_test if quick_test is not None else built[1])
        warnings = () if built == wanted else (
            f"{data} was built with source={built[0]} quick_test={built[1]}, this run asks for source={wanted[0]} "
            f"quick_test={wanted[1]}; it is reused - delete it (or use another --workdir) to rebuild",)
        return PhaseState("skip", f"{data} holds all three datasets and prep_report.json", None, warnings)
    return PhaseState("fresh", f"missing: {', '.join(missing) or 'prep_report.json'}")


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
    needs = {"download": size.download_bytes, "merge": size.full_bytes,
             "export": size.full_bytes + int(size.parameters * GGUF_BYTES_PER_PARAM)}
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


# ---------------------------------------------------------------- dry-run plan


def trainable_count(config: Path | Any, rank: int) -> str:
    try:
        from pipeline_lib.unsloth_utils import count_lora_trainable

        return f"{count_lora_trainable(config, rank, include_experts=True):,}"
    except Exception as exc:  # noqa: BLE001 - the plan still prints; the reason is shown
        return f"unavailable ({exc.__class__.__name__}: {exc})"


def estimate_specs() -> list[Any]:
    """The phases as the cost estimate sees them (pipeline_lib.estimate.PhaseSpec), in run order."""
    from pipeline_lib.estimate import PhaseSpec

    configs = REPO_ROOT / "configs"
    return [PhaseSpec("data_prep", "data"),
            PhaseSpec("tool_calling_sft", "train", "tool_calling", configs / "tool_calling_sft.yaml"),
            PhaseSpec("merge", "merge"),
            PhaseSpec("agent_sft", "train", "agent_traj", configs / "agent_sft.yaml"),
            PhaseSpec("ipo", "train", "preference", configs / "ipo.yaml", pairs=True),
            PhaseSpec("grpo", "train", None, configs / "grpo.yaml"),
            PhaseSpec("export", "export")]


def run_estimate(workdir: Path, model: str, profile: str, *, quick_test: bool, tiny: bool, card: str | None,
                 gpus: int = 1, grpo_language: str = "rust", skipped: set[str] = frozenset()) -> tuple[list, str, str]:
    """(per-phase estimates, card, why that card) for this run."""
    from pipeline_lib.estimate import detect_card, estimate_run

    paths = PipelinePaths(workdir, model_slug(model), grpo_language)
    card_reason = "--card"
    if card is None:
        card, card_reason = detect_card(tiny)
    config = resolve_model_config(model)
    if config is None and tiny:
        from pipeline_lib.tiny_model import tiny_gpt_oss_config

        config = tiny_gpt_oss_config()
    parameters = model_size(config).parameters if isinstance(config, Path) else None
    skip = set(skipped) | ({"grpo"} if not paths.grpo_tasks.is_file() else set())
    estimates = estimate_run(estimate_specs(), data_dir=paths.data, profile=profile, quick_test=quick_test,
                             parameters=parameters, card=card, gpus=gpus, skipped=skip)
    return estimates, card, card_reason


def estimate_lines(workdir: Path, model: str, profile: str, *, quick_test: bool, tiny: bool, card: str | None,
                   gpus: int = 1, grpo_language: str = "rust") -> list[str]:
    from pipeline_lib.estimate import format_estimates

    estimates, card, reason = run_estimate(workdir, model, profile, quick_test=quick_test, tiny=tiny, card=card,
                                           gpus=gpus, grpo_language=grpo_language)
    label = profile + (" + quick test" if quick_test and profile != "tiny" else "")
    return format_estimates(estimates, card, reason, label, unmeasured=[])


def plan(workdir: Path, model: str, profile: str, *, quick_test: bool, skip_data: bool, tiny: bool,
         data_source: str, grpo_language: str = "rust", card: str | None = None, gpus: int = 1) -> str:
    from pipeline_lib.profiles import FIXED_PROFILES, resolve

    paths = PipelinePaths(workdir, model_slug(model), grpo_language)
    config = resolve_model_config(model)
    lines = ["DRY RUN - nothing is trained, downloaded or written.",
             f"model: {model}  (config: {config or 'not available locally'})",
             f"batch profile: {profile}{' + quick test' if quick_test and profile not in FIXED_PROFILES else ''}; "
             f"workdir: {workdir}"]
    size = None
    config_for_counts: Any = config
    if config is not None:
        size = model_size(config)
        lines.append(f"parameters: {size.parameters:,} ({size.dtype})")
    elif tiny:
        from pipeline_lib.tiny_model import tiny_gpt_oss_config

        config_for_counts = tiny_gpt_oss_config()
        lines.append("tiny model not built yet: scripts/make_tiny_gpt_oss.py builds it first")

    def row(phase: str, state: PhaseState, detail: str) -> None:
        lines.append(f"  {phase:<17} {state.action.upper():<6} {state.reason}")
        lines.extend(f"  {'':<17} warning: {w}" for w in state.warnings)
        if detail:
            lines.append(f"  {'':<17} {detail}")

    lines.append("phases:")
    if skip_data:
        data = data_state(paths.data)
        row("data_prep", PhaseState("skip", "--skip-data" + ("" if data.action == "skip" else
                                                             f" (but {data.reason}: the run will stop)")), "")
    else:
        row("data_prep", data_state(paths.data), f"reads: {data_source}; writes {paths.data}")
    for phase, data_name in (("tool_calling_sft", "tool_calling"), ("agent_sft", "agent_traj"), ("ipo", "preference")):
        b = resolve(profile, phase, quick_test=quick_test)
        steps = "epochs from the phase config" if b.max_steps == -1 else f"max_steps {b.max_steps}"
        rank = LORA_RANKS.get(phase)
        lora = (f"LoRA r{rank}, trainable {trainable_count(config_for_counts, rank)}" if rank and config_for_counts
                else "LoRA inherited from agent_sft (r128)" if not rank else f"LoRA r{rank}")
        row(phase, training_state(paths.run_dir(phase)),
            f"reads {paths.data / data_name / 'train'}; batch {b.batch} x accum {b.accum} = {b.effective_batch}, "
            f"seq {b.seq}, {steps}; {lora}")
        if phase == "tool_calling_sft":
            row("merge", merge_state(paths.run_dir("merge")), f"writes {paths.merged_hf}")
    if paths.grpo_tasks.is_file():
        row("grpo", training_state(paths.run_dir("grpo")), f"reads {paths.grpo_tasks}")
    elif tiny:  # run_tui_pipeline.sh writes a few tasks with 16_generate_mutations.py first
        row("grpo", training_state(paths.run_dir("grpo")), f"generates then reads {paths.grpo_tasks}")
    else:
        row("grpo", PhaseState("skip", f"no task file {paths.grpo_tasks} (status skipped_no_tasks)"), "")
    row("export", export_state(paths.run_dir("export")), f"writes {paths.run_dir('export')}/{{hf,gguf_q4}}")
    if size is not None:
        need_merge, need_export = stage_need("merge", size), stage_need("export", size)
        free = free_bytes(paths.checkpoints)
        verdict = "OK" if free >= need_merge + need_export else "NOT ENOUGH"
        lines.append(f"disk: merge ~{gib(need_merge)} (params x {size.dtype}) + export ~{gib(need_export)} "
                     f"(HF + GGUF estimate) = {gib(need_merge + need_export)}; free {gib(free)} -> {verdict}")
        if model_download_needed(model):
            lines.append(f"download: ~{gib(size.download_bytes)} into the HF cache")
    lines.extend(estimate_lines(workdir, model, profile, quick_test=quick_test, tiny=tiny, card=card, gpus=gpus,
                                grpo_language=grpo_language))
    return "\n".join(lines)


def write_run_estimate(out: Path, workdir: Path, model: str, profile: str, *, quick_test: bool, tiny: bool,
                       card: str | None, gpus: int = 1, grpo_language: str = "rust") -> str:
    """Save the estimate the progress lines (pipeline_lib.live) and the summary compare against; return its total."""
    from pipeline_lib.estimate import estimates_json, fmt_duration
    from pipeline_lib.provenance import write_json_atomic

    estimates, card, reason = run_estimate(workdir, model, profile, quick_test=quick_test, tiny=tiny, card=card,
                                           gpus=gpus, grpo_language=grpo_language)
    write_json_atomic(out, {"card": card, "card_reason": reason, "profile": profile, "quick_test": quick_test,
                            "gpus": gpus, "order": [e.phase for e in estimates],
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


# ---------------------------------------------------------------- summary report


def read_run_record(log_dir: Path) -> dict[str, dict[str, Any]]:
    path = log_dir / RUN_RECORD
    out: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            out[entry["phase"]] = entry
    return out


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
    from pipeline_lib.estimate import fmt_duration
    from pipeline_lib.progress import read_run_estimate

    est = read_run_estimate(paths.logs / ".run_estimate.json") or {}
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
        wall = "-" if seconds is None else f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"
        hours = "-" if seconds is None else f"{seconds * gpus / 3600:.3f}"
        rows.append(f"| {phase} | {tokens_cell} | {wall} | {hours} | {rate} | {est_tokens} | {est_time} |")
    return rows


def summary(workdir: Path, model: str, *, grpo_language: str = "rust") -> str:
    from pipeline_lib.evaluation import BASE_STAGE, summary_section

    paths = PipelinePaths(workdir, model_slug(model), grpo_language)
    record = read_run_record(paths.logs)
    gates = read_gates(paths.gates_file)
    rows = ["| phase | status | duration | gate | value | threshold | result |", "|---|---|---|---|---|---|---|"]
    for phase in PHASES:
        entry = record.get(phase, {})
        gate = gates.get(GATE_KEYS.get(phase, ""), {})
        value = (gate.get("loss") or gate.get("size_gb") or gate.get("reward_accuracy") or gate.get("status")
                 or (f"hf {gate['hf']}, gguf {gate['gguf']}" if "hf" in gate else ""))
        label = f"{gate['metric']} [{gate.get('type')}]" if "metric" in gate else ""
        result = gate.get("status") or {"true": "PASS", "false": "FAIL"}.get(gate.get("passed", ""), "")
        if result == "FAIL" and gate.get("type") == "SOFT":
            result = "WARN (soft)"
        seconds = entry.get("seconds")
        duration = "" if seconds is None else f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"
        rows.append(f"| {phase} | {entry.get('status', 'not reached')} | {duration} | "
                    f"{label} | {value} | {gate.get('threshold', '')} | {result} |")
    png = plot_loss_curves(paths, paths.logs / "loss_curves.png")
    cost = cost_rows(paths, record)
    evaluation = summary_section(paths.logs / "eval", [BASE_STAGE, *TRAINED_PHASES])  # stage x metric, delta to base
    text = "\n".join(["# TUI pipeline summary", "", f"model: {model}; workdir: {workdir}", "", *rows, "", *cost,
                      f"loss curves: {png}" if png else "loss curves: none (no trainer_state.json yet)",
                      f"gates: {paths.gates_file}", *([""] + evaluation if evaluation else [])])
    paths.logs.mkdir(parents=True, exist_ok=True)
    (paths.logs / "summary.md").write_text(text + "\n")
    return text


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Helpers for scripts/run_tui_pipeline.sh")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("paths")
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--model", required=True)
    p.add_argument("--grpo-language", default="rust")
    s = sub.add_parser("state")
    s.add_argument("kind", choices=("training", "merge", "export", "data"))
    s.add_argument("dir", type=Path)
    s.add_argument("--source", help="data: the source this run asks for (hub|local)")
    s.add_argument("--quick-test", action="store_true", default=None, help="data: this run is a quick test")
    d = sub.add_parser("disk")
    d.add_argument("--stage", required=True, choices=("data", "download", "merge", "export"))
    d.add_argument("--model", required=True)
    d.add_argument("--workdir", required=True, type=Path)
    pl = sub.add_parser("plan")
    pl.add_argument("--workdir", required=True, type=Path)
    pl.add_argument("--model", required=True)
    pl.add_argument("--profile", required=True)
    pl.add_argument("--quick-test", action="store_true")
    pl.add_argument("--skip-data", action="store_true")
    pl.add_argument("--tiny", action="store_true")
    pl.add_argument("--data-source", default="hub datasets (writeup §5)")
    pl.add_argument("--grpo-language", default="rust")
    pl.add_argument("--card", default=None, help="GPU the estimate is for (default: detected, else H100-80GB)")
    pl.add_argument("--gpus", type=int, default=1)
    es = sub.add_parser("estimate", help="write the run's per-phase estimate (JSON) for the progress/ETA lines")
    es.add_argument("--workdir", required=True, type=Path)
    es.add_argument("--model", required=True)
    es.add_argument("--profile", required=True)
    es.add_argument("--quick-test", action="store_true")
    es.add_argument("--tiny", action="store_true")
    es.add_argument("--grpo-language", default="rust")
    es.add_argument("--card", default=None)
    es.add_argument("--gpus", type=int, default=1)
    es.add_argument("--out", required=True, type=Path)
    pg = sub.add_parser("progress", help="one whole-run progress line at a phase start")
    pg.add_argument("--phase", required=True)
    pg.add_argument("--estimate", required=True, type=Path)
    pg.add_argument("--elapsed", required=True, type=float, help="seconds since the run started")
    sm = sub.add_parser("summary")
    sm.add_argument("--workdir", required=True, type=Path)
    sm.add_argument("--model", required=True)
    sm.add_argument("--grpo-language", default="rust")
    args = parser.parse_args(argv)

    if args.command == "paths":
        print(shell_assignments(PipelinePaths(args.workdir, model_slug(args.model), args.grpo_language).shell()))
    elif args.command == "state":
        fn = {"training": training_state, "merge": merge_state, "export": export_state}
        if args.kind == "data":
            state = data_state(args.dir, source=args.source, quick_test=bool(args.quick_test))
        else:
            state = fn[args.kind](args.dir)
        for warning in state.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
        print(state.shell())
    elif args.command == "disk":
        target = args.workdir / "checkpoints"
        ok, msg = disk_preflight(args.stage, args.model, target, cache_dir=args.workdir / "logs")
        print(msg if ok else f"NOT ENOUGH DISK SPACE - {msg}")
        return 0 if ok else 1
    elif args.command == "plan":
        print(plan(args.workdir, args.model, args.profile, quick_test=args.quick_test, skip_data=args.skip_data,
                   tiny=args.tiny, data_source=args.data_source, grpo_language=args.grpo_language, card=args.card,
                   gpus=args.gpus))
    elif args.command == "estimate":
        print(write_run_estimate(args.out, args.workdir, args.model, args.profile, quick_test=args.quick_test,
                                 tiny=args.tiny, card=args.card, gpus=args.gpus, grpo_language=args.grpo_language))
    elif args.command == "progress":
        print(phase_start_line(args.phase, args.estimate, args.elapsed))
    elif args.command == "summary":
        print(summary(args.workdir, args.model, grpo_language=args.grpo_language))
    return 0


if __name__ == "__main__":
    sys.exit(main())
