"""What a run will cost before it starts: training tokens, optimizer steps, wall time and GPU-hours per phase.

    python -m pipeline_lib.orchestrate plan ...    # run_tui_pipeline.sh --dry-run prints this table

Tokens come from the prepared data (``prep_report.json``: kept rows and mean Harmony tokens per dataset) or, before
data prep, from the configured row counts in ``configs/data_prep.yaml`` and their stated tokens-per-row. Time comes
from ``configs/throughput.yaml``: measured tokens/s per card, phase and backend, each row citing docs/BENCHMARKS.md.
A phase with no measurement for the card says so instead of guessing. The estimate is a floor of the training
steps alone: data loading, checkpoint saves and the first step's compilation (10-90 s per phase, docs/BENCHMARKS.md)
come on top.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib import phases
from pipeline_lib.progress import fmt_duration

REPO_ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_PATH = REPO_ROOT / "configs" / "throughput.yaml"
DATA_CONFIG_PATH = REPO_ROOT / "configs" / "data_prep.yaml"
# Card names a GPU's marketing name maps to (nvidia-smi --query-gpu=name); the first match wins.
CARD_PATTERNS = (("H200", "H200"), ("H100", "H100-80GB"), ("A100", "A100-80GB"))
DEFAULT_GPU_CARD = "H100-80GB"  # the writeup's target (§6): what a plan on a machine without a GPU assumes
CPU_CARD = "cpu-2core"
# Agent-SFT packing fill: best-fit-decreasing filled 0.84 of each 32,768-token row with ~2.8K-token conversations
# (docs/BENCHMARKS.md, Phase 2); an unpacked step trains one conversation per row.
PACKED_FILL = 0.84


@dataclass(frozen=True)
class Measurement:
    card: str
    phase: str
    backend: str
    tokens_per_second: float
    seq: int
    date: str
    source: str


@dataclass(frozen=True)
class MergeMeasurement:
    card: str
    seconds: float
    parameters: int
    date: str
    source: str


@dataclass(frozen=True)
class ThroughputTable:
    training: tuple[Measurement, ...]
    merge: tuple[MergeMeasurement, ...]

    def lookup(self, card: str, phase: str, backend: str) -> Measurement | None:
        """The measurement for this card/phase/backend ('auto' is resolved first: ``planned_backend``)."""
        for m in self.training:
            if (m.card, m.phase, m.backend) == (card, phase, backend):
                return m
        return None

    def basis_for(self, card: str, phase: str, backend: str) -> Measurement | None:
        """``lookup``, falling back to unsloth's row, then hf's, when this card has none for ``backend`` (the
        estimate's basis line names the backend it used)."""
        for wanted in dict.fromkeys((backend, "unsloth", "hf")):
            if (m := self.lookup(card, phase, wanted)) is not None:
                return m
        return None


def planned_backend(backend: str, card: str, *, packing: bool, mxfp4: bool) -> str:
    """What a phase configured with ``backend`` trains on for this card: 'auto' follows the phases' own rule
    (unsloth_utils.auto_backend, with Unsloth installed as on the GPU image; the CPU card has no CUDA)."""
    if backend != "auto":
        return backend
    from pipeline_lib.unsloth_utils import auto_backend

    return auto_backend(cuda=card != CPU_CARD, unsloth=True, mxfp4=mxfp4, packing=packing)[0]


def load_throughput(path: Path = THROUGHPUT_PATH) -> ThroughputTable:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    training, merge = [], []
    for i, row in enumerate(raw.get("training") or []):
        where = f"{path}: training[{i}]"
        missing = {"card", "phase", "backend", "tokens_per_second", "seq", "date", "source"} - set(row)
        if missing:
            raise ValueError(f"{where}: missing {', '.join(sorted(missing))}")
        if not float(row["tokens_per_second"]) > 0:
            raise ValueError(f"{where}: tokens_per_second must be > 0, got {row['tokens_per_second']!r}")
        training.append(Measurement(str(row["card"]), str(row["phase"]), str(row["backend"]),
                                    float(row["tokens_per_second"]), int(row["seq"]), str(row["date"]),
                                    str(row["source"])))
    for i, row in enumerate(raw.get(phases.MERGE.name) or []):
        missing = {"card", "seconds", "parameters", "date", "source"} - set(row)
        if missing:
            raise ValueError(f"{path}: merge[{i}]: missing {', '.join(sorted(missing))}")
        merge.append(MergeMeasurement(str(row["card"]), float(row["seconds"]), int(row["parameters"]),
                                      str(row["date"]), str(row["source"])))
    return ThroughputTable(tuple(training), tuple(merge))


def detect_card(tiny: bool = False) -> tuple[str, str]:
    """(card, how it was chosen): the local GPU's name when nvidia-smi answers, else the writeup's H100."""
    if tiny:
        return CPU_CARD, "the tiny demo runs on the CPU"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_GPU_CARD, "no GPU here: assuming the writeup's H100 80GB (--card to change)"
    name = out.strip().splitlines()[0] if out.strip() else ""
    for pattern, card in CARD_PATTERNS:
        if pattern in name:
            return card, f"detected {name}"
    return name or DEFAULT_GPU_CARD, f"detected {name or 'an unnamed GPU'} (no measurements for it)"


# ---------------------------------------------------------------- data volume


@dataclass(frozen=True)
class DataVolume:
    rows: int
    mean_tokens: float  # Harmony tokens per row (chosen conversation for preference rows)
    basis: str


def prepared_volumes(data_dir: Path) -> dict[str, DataVolume]:
    """Per data category (tool_calling, agent_traj, preference): kept rows and mean tokens from prep_report.json."""
    report_path = Path(data_dir) / "prep_report.json"
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return {}
    if report.get("error"):
        return {}
    totals: dict[str, list[float]] = {}
    for info in (report.get("datasets") or {}).values():
        tokens = info.get("tokens") or {}
        if not info.get("kept") or tokens.get("mean") is None:
            continue
        rows_tokens = totals.setdefault(info["category"], [0, 0.0])
        rows_tokens[0] += int(info["kept"])
        rows_tokens[1] += int(info["kept"]) * float(tokens["mean"])
    return {cat: DataVolume(int(rows), tok / rows, f"prepared data ({report_path})")
            for cat, (rows, tok) in totals.items() if rows}


def configured_volumes(quick_test: bool, path: Path = DATA_CONFIG_PATH) -> dict[str, DataVolume]:
    """Before data prep: rows = the configured cap (else the dataset's upstream_rows), tokens = its tokens_per_row.

    A category any of whose datasets lacks a row count or tokens_per_row is left out (tokens unknown): a partial sum
    would understate it.
    """
    from pipeline_lib.data_prep import SPECS

    raw = yaml.safe_load(Path(path).read_text()) or {}
    entries = raw.get("datasets") or {}
    totals: dict[str, list[float]] = {}
    unknown: set[str] = set()
    for spec in SPECS:
        entry = entries.get(spec.key) or {}
        rows = entry.get("quick") if quick_test else entry.get("full")
        if rows is not None and entry.get("per_part"):
            rows = int(rows) * len(spec.parts)
        upstream = entry.get("upstream_rows")
        rows = upstream if rows is None else (min(int(rows), int(upstream)) if upstream else rows)
        mean = entry.get("tokens_per_row")
        if rows is None or mean is None:
            unknown.add(spec.category)
            continue
        acc = totals.setdefault(spec.category, [0, 0.0])
        acc[0] += int(rows)
        acc[1] += int(rows) * float(mean)
    return {cat: DataVolume(int(rows), tok / rows, f"configured sizes ({Path(path).name}: rows x tokens_per_row)")
            for cat, (rows, tok) in totals.items() if rows and cat not in unknown}


# ---------------------------------------------------------------- per-phase estimate


@dataclass(frozen=True)
class TrainingPlan:
    phase: str
    volume: DataVolume | None
    batch: int
    accum: int  # per GPU: a step trains batch x accum x gpus rows
    seq: int
    max_steps: int  # -1: train `epochs` over the data
    epochs: float
    backend: str  # as planned (planned_backend); ThroughputTable.basis_for picks the measurement
    packed: bool = False
    pairs: bool = False  # preference rows: chosen and rejected are both forwarded
    gpus: int = 1


@dataclass(frozen=True)
class PhaseEstimate:
    phase: str
    tokens: int | None
    steps: int | None
    seconds: float | None
    gpus: int
    basis: str

    @property
    def gpu_hours(self) -> float | None:
        return None if self.seconds is None else self.seconds / 3600 * self.gpus


def tokens_per_step(plan: TrainingPlan) -> float | None:
    if plan.volume is None:
        return None
    rows = plan.batch * plan.accum * plan.gpus
    if plan.packed:
        return rows * plan.seq * PACKED_FILL
    per_row = min(plan.volume.mean_tokens, plan.seq) * (2 if plan.pairs else 1)
    return rows * per_row


def estimate_training(plan: TrainingPlan, table: ThroughputTable, card: str) -> PhaseEstimate:
    per_step = tokens_per_step(plan)
    if per_step is None:
        return PhaseEstimate(plan.phase, None, None if plan.max_steps < 0 else plan.max_steps, None, plan.gpus,
                             "no data volume yet (data prep has not run and the config states no size)")
    if plan.max_steps > 0:
        steps = plan.max_steps
    else:
        volume_tokens = plan.volume.rows * min(plan.volume.mean_tokens, plan.seq) * (2 if plan.pairs else 1)
        steps = max(1, math.ceil(volume_tokens * plan.epochs / per_step))
    tokens = int(steps * per_step)
    m = table.basis_for(card, plan.phase, plan.backend)
    if m is None:
        return PhaseEstimate(plan.phase, tokens, steps, None, plan.gpus,
                             f"no measurement for {plan.phase} on {card} ({plan.backend})")
    seconds = tokens / (m.tokens_per_second * plan.gpus)
    basis = f"{m.tokens_per_second:,.0f} tok/s {m.backend} on {m.card} at seq {m.seq}, {m.date} ({m.source})"
    if plan.gpus > 1:
        basis += f"; x{plan.gpus} GPUs assumes linear scaling"
    return PhaseEstimate(plan.phase, tokens, steps, seconds, plan.gpus, basis)


def estimate_merge(phase: str, parameters: int | None, table: ThroughputTable, card: str) -> PhaseEstimate:
    rows = [m for m in table.merge if m.card == card]
    if not rows or not parameters:
        return PhaseEstimate(phase, None, None, None, 1, f"no measurement for {phase} on {card}")
    m = rows[0]
    seconds = m.seconds * parameters / m.parameters
    return PhaseEstimate(phase, None, None, seconds, 1,
                         f"{m.seconds:.0f} s for {m.parameters / 1e9:.1f}B params on {m.card}, {m.date}, "
                         f"scaled linearly to {parameters / 1e9:.1f}B ({m.source})")


def format_estimates(estimates: list[PhaseEstimate], card: str, card_reason: str, profile: str,
                     unmeasured: list[str]) -> list[str]:
    lines = [f"estimate on {card} ({card_reason}), {profile} profile - training steps only:"]
    for e in estimates:
        if e.seconds == 0 and not e.steps:
            lines.append(f"  {e.phase:<17} {'-':>20} {'':>12}  {'skip':>14}  ({e.basis})")
            continue
        tokens = f"{e.tokens:,} tokens" if e.tokens is not None else ("tokens unknown" if e.steps else "-")
        steps = f"{e.steps:,} steps" if e.steps is not None else ""
        hours = f", {e.gpu_hours:.2f} GPU-h" if e.gpu_hours is not None else ""
        lines.append(f"  {e.phase:<17} {tokens:>20} {steps:>12}  {fmt_duration(e.seconds):>14}{hours}")
        lines.append(f"  {'':<17} basis: {e.basis}")
    known = [e for e in estimates if e.seconds is not None]
    total = sum(e.seconds for e in known)  # type: ignore[misc]
    gpu_hours = sum(e.gpu_hours for e in known)  # type: ignore[misc]
    missing = [e.phase for e in estimates if e.seconds is None] + unmeasured
    tail = f" + no measurement for {', '.join(missing)}" if missing else ""
    lines.append(f"total: ~{fmt_duration(total)} ({gpu_hours:.2f} GPU-hours) on {card} with the {profile} "
                 f"profile{tail}")
    return lines


def estimates_json(estimates: list[PhaseEstimate]) -> dict[str, dict[str, Any]]:
    """What the orchestrator saves at the start of a run (logs/.run_estimate.json) for the ETA lines and summary."""
    return {e.phase: {"tokens": e.tokens, "steps": e.steps, "seconds": e.seconds, "gpus": e.gpus,
                      "basis": e.basis} for e in estimates}


# ---------------------------------------------------------------- the whole run


@dataclass(frozen=True)
class PhaseSpec:
    """What the estimate needs to know of a phase (the orchestrator's phase table supplies it)."""

    name: str
    kind: str  # pipeline_lib.phases.KIND_*
    category: str | None = None  # the prepared data it trains on
    config: Path | None = None  # its YAML (epochs, backend, packing)
    pairs: bool = False
    mxfp4: bool = False  # it trains a released MXFP4 checkpoint (Phase 1 on the hub model): 'auto' picks fast


def phase_settings(config: Path | None) -> dict[str, Any]:
    if config is None or not Path(config).is_file():
        return {}
    return yaml.safe_load(Path(config).read_text()) or {}


def estimate_run(specs: list[PhaseSpec], *, data_dir: Path, profile: str, quick_test: bool, parameters: int | None,
                 card: str, gpus: int = 1, skipped: set[str] = frozenset(),
                 table: ThroughputTable | None = None) -> list[PhaseEstimate]:
    """One estimate per phase in ``specs`` order; phases in ``skipped`` (finished, or without task data) cost 0."""
    from pipeline_lib.profiles import per_gpu_accum, resolve

    table = table or load_throughput()
    volumes = prepared_volumes(data_dir) or configured_volumes(quick_test and profile != "tiny")
    out = []
    for spec in specs:
        if spec.name in skipped:
            out.append(PhaseEstimate(spec.name, 0, 0, 0.0, gpus, "skipped (finished or nothing to do)"))
        elif spec.kind == phases.KIND_TRAIN:
            settings = phase_settings(spec.config)
            batch = resolve(profile, spec.name, quick_test=quick_test)
            packing = bool(settings.get("packing"))
            backend = planned_backend(str(settings.get("backend", "auto")), card, packing=packing, mxfp4=spec.mxfp4)
            # the row the estimate will use: Unsloth trains gpt_oss unpacked (sft.effective_packing), so then does
            # the estimate
            measured = table.basis_for(card, spec.name, backend)
            uses_unsloth = backend == "unsloth" or (measured is not None and measured.backend == "unsloth")
            out.append(estimate_training(TrainingPlan(
                # per GPU, as the orchestrator launches it (accumulation / gpus): the global batch stays the profile's
                spec.name, volumes.get(spec.category or ""), batch.batch, per_gpu_accum(batch.accum, gpus), batch.seq,
                batch.max_steps,
                float(settings.get("num_train_epochs", 1)), backend,
                packed=packing and not uses_unsloth, pairs=spec.pairs, gpus=gpus),
                table, card))
        elif spec.kind == phases.KIND_MERGE:
            out.append(estimate_merge(spec.name, parameters, table, card))
        else:
            out.append(PhaseEstimate(spec.name, None, None, None, 1, f"no measurement for {spec.name} on {card}"))
    return out
