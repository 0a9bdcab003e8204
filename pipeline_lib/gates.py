"""Quality gates between phases (writeup §8): HARD gates stop the pipeline, SOFT gates warn.

    python -m pipeline_lib.gates check --phase tool_calling_sft --run-dir checkpoints/tool_calling_sft \
        --gates-file logs/quality_gates.json [--profile default|tiny] [--gates-config configs/gates.yaml]
    python -m pipeline_lib.gates record --phase grpo --gates-file logs/quality_gates.json --status skipped_no_tasks

`check` reads the phase's saved outputs (trainer_state.json, merge/export manifest.json), merges the result into
logs/quality_gates.json (atomically, under a lock) and exits 1 on a HARD failure with gate, value and threshold on
the last line. Values are written as strings, in the writeup's shape:
{"tool_calling": {"loss": "1.458", "passed": "true", ...}, "merge": {"size_gib": ..., "smoke_test": ...}, ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib import phases
from pipeline_lib.merge import EQUIVALENCE_CHECK, SMOKE_CHECK, is_advisory, merge_manifest_problems
from pipeline_lib.metrics import get_avg_loss, read_phase_metrics
from pipeline_lib.provenance import write_json_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
GATES_CONFIG = REPO_ROOT / "configs" / "gates.yaml"
GATE_PROFILES = ("default", "tiny")
# Phase name (CLI, configs) -> key in quality_gates.json (the writeup's names), from the phase table.
GATE_KEYS = phases.GATE_KEYS
METRICS = {"avg_loss_last_10", "merged_size", "loss_logged", "reward_accuracy", "export_verified"}
OPS = {"<=": lambda v, t: v <= t, ">=": lambda v, t: v >= t, ">": lambda v, t: v > t, "<": lambda v, t: v < t}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1}
LOSS_WINDOW = 10  # writeup §8: "avg loss (last 10 steps)"


@dataclass(frozen=True)
class GateSpec:
    phase: str
    metric: str
    type: str  # HARD or SOFT
    op: str | None = None
    threshold: float | None = None
    size_fraction: float | None = None
    gguf_type: str | None = None


@dataclass
class GateResult:
    phase: str
    type: str
    passed: bool
    metric: str
    value: float | None
    threshold: str
    detail: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return GATE_KEYS[self.phase]

    @property
    def hard_failure(self) -> bool:
        return self.type == "HARD" and not self.passed

    def line(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        verdict = "PASS" if self.passed else ("FAIL" if self.type == "HARD" else "WARN (soft gate, continuing)")
        return f"GATE {self.key} [{self.type}] {self.metric} = {value} (threshold {self.threshold}): {verdict}" + (
            f" - {self.detail}" if self.detail else "")


def load_gate_specs(profile: str = "default", path: str | os.PathLike = GATES_CONFIG) -> dict[str, GateSpec]:
    """Validated gate specs of one profile; a malformed file fails naming the entry."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or profile not in data:
        raise ValueError(f"{path}: gate profile '{profile}' missing (have: {sorted(data or {})})")
    specs = {}
    for phase in GATE_KEYS:
        entry = data[profile].get(phase)
        where = f"{path}: {profile}.{phase}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: missing")
        spec = GateSpec(phase=phase, **entry)
        if spec.metric not in METRICS:
            raise ValueError(f"{where}.metric must be one of {sorted(METRICS)}, got {spec.metric!r}")
        if spec.type not in ("HARD", "SOFT") or spec.gguf_type not in (None, "HARD", "SOFT"):
            raise ValueError(f"{where}: type/gguf_type must be HARD or SOFT")
        if spec.metric in ("avg_loss_last_10", "reward_accuracy"):
            if spec.op not in OPS or not isinstance(spec.threshold, int | float):
                raise ValueError(f"{where}: needs op in {sorted(OPS)} and a numeric threshold")
        if spec.metric == "merged_size" and not (isinstance(spec.size_fraction, int | float)
                                                 and 0 < spec.size_fraction <= 1):
            raise ValueError(f"{where}.size_fraction must be in (0, 1]")
        specs[phase] = spec
    return specs


# ---------------------------------------------------------------- gate checks


def _b(flag: bool) -> str:
    return "true" if flag else "false"


def check_loss_gate(spec: GateSpec, run_dir: Path) -> GateResult:
    value = get_avg_loss(run_dir, n=LOSS_WINDOW)
    if value is None:  # no trainer_state.json: fall back to the phase's own summary
        value = (read_phase_metrics(run_dir / "final") or {}).get("avg_loss_last_10")
    threshold = f"{spec.op} {spec.threshold}"
    if value is None or not math.isfinite(value):
        return GateResult(spec.phase, spec.type, False, spec.metric, None, threshold,
                          f"no finite train loss logged under {run_dir}", {"loss": "n/a"})
    passed = OPS[spec.op](value, spec.threshold)
    return GateResult(spec.phase, spec.type, passed, spec.metric, value, threshold, "", {"loss": f"{value:.3f}"})


def check_loss_logged(spec: GateSpec, run_dir: Path) -> GateResult:
    value = get_avg_loss(run_dir, n=LOSS_WINDOW)
    logged = value is not None and math.isfinite(value)
    return GateResult(spec.phase, spec.type, logged, spec.metric, value, "logged", "" if logged else
                      f"no finite loss in {run_dir}", {"loss": f"{value:.3f}" if logged else "n/a"})


def check_reward_gate(spec: GateSpec, run_dir: Path) -> GateResult:
    value = (read_phase_metrics(run_dir / "final") or {}).get("reward_accuracy")
    source = "phase_metrics.json reward_accuracy"
    if value is None:
        value = get_avg_loss(run_dir, n=LOSS_WINDOW, key="reward")
        source = f"mean of the last {LOSS_WINDOW} logged rewards"
    threshold = f"{spec.op} {spec.threshold}"
    if value is None:
        return GateResult(spec.phase, spec.type, False, spec.metric, None, threshold, f"no reward logged in {run_dir}",
                          {"reward_accuracy": "n/a"})
    passed = OPS[spec.op](float(value), spec.threshold)
    return GateResult(spec.phase, spec.type, passed, spec.metric, float(value), threshold, source,
                      {"reward_accuracy": f"{float(value):.3f}"})


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def manifest_checks(manifest: dict[str, Any]) -> dict[str, bool]:
    """{check name: passed} from a manifest's ``checks`` (a {name: {passed: ...}} dict or a list of {name, passed})."""
    checks = manifest.get("checks", {})
    items = checks.items() if isinstance(checks, dict) else ((c.get("name", "?"), c) for c in checks)
    out = {}
    for name, check in items:
        out[str(name)] = bool(check.get("passed")) if isinstance(check, dict) else bool(check)
    return out


def safetensors_problem(path: Path) -> str | None:
    """None when the file's header parses and its data is all there (a truncated copy is caught cheaply).

    Hand-written instead of safetensors.safe_open: safe_open maps the file and would accept a header whose data
    region was cut short until a tensor is read; reading 39 GB of tensors to find out is not a preflight.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len <= 0 or 8 + header_len > size:
                return f"{path.name}: header length {header_len} exceeds the file ({size} bytes)"
            header = json.loads(fh.read(header_len))
    except (OSError, ValueError, struct.error) as exc:
        return f"{path.name}: unreadable ({exc.__class__.__name__}: {exc})"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    if not ends:
        return f"{path.name}: no tensors"
    if 8 + header_len + max(ends) > size:
        return f"{path.name}: truncated ({size} bytes, header promises {8 + header_len + max(ends)})"
    return None


def folder_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum((Path(root) / f).stat().st_size for f in files)
    return total


def expected_model_bytes(config_path: Path, manifest: dict[str, Any] | None = None) -> tuple[int, int, str]:
    """(parameters, bytes per parameter, dtype) of a model folder: the manifest's numbers if it states them, else
    its config.json on a meta-device model (no weights read)."""
    config = json.loads(config_path.read_text())
    manifest = manifest or {}
    size_check = manifest.get("checks", {}).get("size", {}) if isinstance(manifest.get("checks"), dict) else {}
    dtype = str(manifest.get("saved_dtype") or config.get("dtype") or config.get("torch_dtype") or "bfloat16")
    dtype = dtype.removeprefix("torch.")
    params = size_check.get("parameters")
    if not params:
        from pipeline_lib.modeling import build_meta_model

        params = sum(p.numel() for p in build_meta_model(config_path.parent).parameters())
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"{config_path}: unknown dtype {dtype!r}")
    return int(params), DTYPE_BYTES[dtype], dtype


def check_merge_gate(spec: GateSpec, hf_dir: Path) -> GateResult:
    """Writeup: size floor + config.json valid + safetensors loadable + smoke test; ours: merged == base+adapter
    logits (the manifest's equivalence check)."""
    problems: list[str] = []
    manifest = read_manifest(hf_dir / "manifest.json")
    if manifest is None:
        problems.append(f"{hf_dir / 'manifest.json'} missing or unreadable")
    size = folder_bytes(hf_dir) if hf_dir.is_dir() else 0
    floor = 0
    try:
        params, nbytes, dtype = expected_model_bytes(hf_dir / "config.json", manifest)
        floor = int(params * nbytes * spec.size_fraction)
        config_ok = True
    except (OSError, ValueError) as exc:
        problems.append(f"config.json invalid ({exc})")
        config_ok, params, dtype = False, 0, "?"
    shards = sorted(hf_dir.glob("*.safetensors"))
    bad = [p for p in (safetensors_problem(s) for s in shards) if p]
    problems += bad or ([] if shards else ["no *.safetensors"])
    checks = manifest_checks(manifest) if manifest else {}
    if manifest is not None:
        problems += merge_manifest_problems(manifest)  # the merge's own rule (pipeline_lib.merge)
    smoke = checks.get(SMOKE_CHECK) is True
    logits = checks.get(EQUIVALENCE_CHECK) is True
    if manifest is not None and manifest.get("passed") is not True:
        problems.append("manifest passed != true")
    size_ok = size >= floor > 0
    if not size_ok:
        problems.append(f"size {size / 2**30:.3f} GiB < floor {floor / 2**30:.3f} GiB")
    smoke_ok = config_ok and not bad and bool(shards) and smoke
    passed = not problems
    fields = {"size_gib": f"{size / 2**30:.2f}", "passed": _b(passed), "smoke_test": _b(smoke_ok),
              "logits_equivalence": _b(logits),
              "size_floor_gib": f"{floor / 2**30:.2f}", "parameters": str(params), "dtype": dtype}
    threshold = f">= {floor / 2**30:.3f} GiB ({spec.size_fraction} x {params:,} params x {dtype}) + checks"
    return GateResult(spec.phase, spec.type, passed, spec.metric, size / 2**30, threshold, "; ".join(problems),
                      fields)


def export_problems(export_dir: Path) -> list[str]:
    """Why an export does not count as done (empty when it does): the manifest passed, hf/config.json exists and
    every hf/*.safetensors shard is whole. The one rule for the orchestrator's skip and the export gate, so a
    truncated hf/model.safetensors is redone instead of passing as "manifest passed"."""
    manifest = read_manifest(export_dir / "manifest.json")
    if manifest is None:
        return [f"{export_dir / 'manifest.json'} missing or unreadable"]
    hf_dir = export_dir / "hf"
    problems = [] if manifest.get("passed") is True and (manifest.get("hf") or {}).get("passed") is True else [
        "manifest does not say the HF export passed"]
    if not (hf_dir / "config.json").is_file():
        problems.append("hf/config.json missing")
    shards = sorted(hf_dir.glob("*.safetensors"))
    problems += [p for p in (safetensors_problem(s) for s in shards) if p] or ([] if shards else
                                                                               ["no hf/*.safetensors"])
    return problems


def check_export_gate(spec: GateSpec, export_dir: Path) -> GateResult:
    """HF export verified (HARD): the export manifest's ``hf`` section passed (merge checks on the exported
    weights) and hf/config.json exists. GGUF verified (``gguf.passed``, llama.cpp logits vs HF) is reported with its
    own type: SOFT by default, as the writeup lets a failed GGUF conversion pass when the HF export succeeded."""
    manifest = read_manifest(export_dir / "manifest.json")
    threshold = f"HF export verified ({spec.type}), GGUF verified ({spec.gguf_type})"
    if manifest is None:
        return GateResult(spec.phase, spec.type, False, spec.metric, None, threshold,
                          f"{export_dir / 'manifest.json'} missing or unreadable", {"passed": "false"})
    hf, gguf = manifest.get("hf") or {}, manifest.get("gguf") or {}
    file_problems = export_problems(export_dir)
    hf_ok = not file_problems
    gguf_ok = gguf.get("passed") is True
    hf_checks = hf.get("checks") if isinstance(hf.get("checks"), dict) else {}
    advisory = {name for name, entry in hf_checks.items() if is_advisory(entry)}
    problems = [f"HF check {name} failed" for name, ok in manifest_checks(hf).items()
                if not ok and name not in advisory] or file_problems
    if not gguf_ok:
        problems.append(f"GGUF not verified ({gguf.get('status', 'no gguf section')})")
    passed = hf_ok and (gguf_ok or spec.gguf_type == "SOFT")
    fields = {"hf": _b(hf_ok), "gguf": _b(gguf_ok), "passed": _b(passed)}
    if hf_ok and not gguf_ok:
        fields["warning"] = "GGUF missing or unverified; the HF export is complete (GGUF can be regenerated)"
    return GateResult(spec.phase, spec.type, passed, spec.metric, float(hf_ok) + float(gguf_ok), threshold,
                      "; ".join(problems), fields)


CHECKS = {"avg_loss_last_10": check_loss_gate, "loss_logged": check_loss_logged, "reward_accuracy": check_reward_gate,
          "merged_size": check_merge_gate, "export_verified": check_export_gate}


def check_gate(spec: GateSpec, run_dir: str | os.PathLike) -> GateResult:
    result = CHECKS[spec.metric](spec, Path(run_dir))
    result.fields.setdefault("passed", _b(result.passed))
    result.fields.update({"type": spec.type, "metric": spec.metric, "threshold": result.threshold})
    return result


# ---------------------------------------------------------------- quality_gates.json


@contextlib.contextmanager
def _locked(gates_file: Path) -> Iterator[None]:
    gates_file.parent.mkdir(parents=True, exist_ok=True)
    with open(gates_file.with_name(f".{gates_file.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record_gate(gates_file: str | os.PathLike, key: str, fields: dict[str, str]) -> dict[str, Any]:
    """Replace one gate's entry in quality_gates.json: read, update, write tmp + os.replace, all under a lock."""
    path = Path(gates_file)
    with _locked(path):
        data = read_gates(path)
        data[key] = {**fields, "checked_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        write_json_atomic(path, data)
    return data


def read_gates(gates_file: str | os.PathLike) -> dict[str, Any]:
    path = Path(gates_file)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); move it aside to start the gate record afresh") from exc
    return data if isinstance(data, dict) else {}


def failure_line(result: GateResult) -> str:
    value = "n/a" if result.value is None else f"{result.value:.4g}"
    return (f"HARD GATE FAILED: {result.key} {result.metric} = {value}, threshold {result.threshold}"
            + (f" ({result.detail})" if result.detail else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or record a quality gate (writeup §8)")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check a phase's gate from its saved outputs and record it")
    check.add_argument("--phase", required=True, choices=list(GATE_KEYS))
    check.add_argument("--run-dir", required=True, help="phase output dir (merge: <merged>/hf; export: export dir)")
    check.add_argument("--gates-file", required=True)
    check.add_argument("--profile", default="default", choices=GATE_PROFILES)
    check.add_argument("--gates-config", default=str(GATES_CONFIG))
    rec = sub.add_parser("record", help="record a status without a check (e.g. grpo skipped_no_tasks)")
    rec.add_argument("--phase", required=True, choices=list(GATE_KEYS))
    rec.add_argument("--gates-file", required=True)
    rec.add_argument("--status", required=True)
    rec.add_argument("--reason", default="")
    args = parser.parse_args(argv)

    if args.command == "record":
        fields = {"status": args.status, **({"reason": args.reason} if args.reason else {})}
        record_gate(args.gates_file, GATE_KEYS[args.phase], fields)
        print(f"GATE {GATE_KEYS[args.phase]}: {args.status}")
        return 0
    spec = load_gate_specs(args.profile, args.gates_config)[args.phase]
    result = check_gate(spec, args.run_dir)
    record_gate(args.gates_file, result.key, result.fields)
    print(result.line())
    if result.hard_failure:
        print(failure_line(result))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
