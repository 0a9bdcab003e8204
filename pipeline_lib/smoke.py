"""The GPU smoke run's own checks and its report (scripts/gpu_smoke.sh calls these; they run on CPU too).

    python -m pipeline_lib.smoke checks --model DIR --adapter DIR --out checks.json
    python -m pipeline_lib.smoke report --workdir W --model DIR --smoke-log smoke.jsonl [--gpu-csv mem.csv] --out R

``checks`` are what the pipeline's own run cannot show, on the real shape and dtype (bf16 on CUDA):
- released layout: the model folder's MXFP4 ``*_blocks``/``*_scales`` load (pipeline_lib.modeling.load_causal_lm,
  the phases' loader) to exactly what our decoder reads from the files;
- adapter fingerprint: the tool-calling adapter reproduces, through plain PEFT, the logits its training process
  recorded; negative control: the same adapter with one expert LoRA tensor zeroed must fail;
- merge check: the merged weights hold the adapter's delta (pipeline_lib.merge DELTA_CHECK) and merged ==
  base+adapter logits with every part of its tolerance shown; negative control: the same merge with the expert deltas
  dropped (PEFT's ParamWrapper.merge made a no-op, what older merge tools did) must fail the weight check.
``report`` collects per-phase status, wall time, first-step time and peak memory, and the checks, as Markdown + JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import re
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline_lib import phases as pipeline_phases

KILL_PHASE = pipeline_phases.AGENT_SFT.name  # the phase scripts/gpu_smoke.sh kills once to test resume
# The smoke run is a --quick-test run (state under <workdir>/quick-test/) with Python GRPO tasks: python3 is on every
# GPU box, cargo often is not.
GRPO_LANGUAGE = "python"


def smoke_paths(workdir: Path, model: str) -> Any:
    """The pipeline paths of the smoke run's own orchestrator call (--quick-test, --grpo-language python)."""
    from pipeline_lib.orchestrate import PipelinePaths, model_slug

    return PipelinePaths(Path(workdir), model_slug(model), GRPO_LANGUAGE, quick_test=True)


def shell_paths(workdir: Path, model: str, kill_phase: str) -> str:
    """KEY=value lines for scripts/gpu_smoke.sh (eval'd): where data prep writes, what to kill, what to check."""
    import shlex

    paths = smoke_paths(workdir, model)
    values = {"DATA_DIR": paths.data, "TOOL_DIR": paths.run_dir(pipeline_phases.TOOL_CALLING.name),
              "KILL_DIR": paths.run_dir(kill_phase) if kill_phase != "none" else "/nonexistent",
              "GRPO_TASKS": paths.grpo_tasks, "GRPO_LANGUAGE": GRPO_LANGUAGE, "LOG_DIR": paths.logs,
              "STATE_DIR": paths.base}
    return "\n".join(f"{k}={shlex.quote(str(v))}" for k, v in values.items())


def zero_one_expert_tensor(adapter_dir: Path, out_dir: Path) -> str:
    """Copy an adapter with its first expert ``lora_B`` tensor zeroed (the delta of one expert LoRA gone)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter_dir, out_dir)
    path = out_dir / "adapter_model.safetensors"
    weights = load_file(str(path))
    key = next((k for k in sorted(weights) if "experts" in k and "lora_B" in k), None)
    if key is None:
        raise ValueError(f"{adapter_dir}: no expert lora_B tensor (keys: {sorted(weights)[:6]}...)")
    weights[key] = torch.zeros_like(weights[key])
    save_file(weights, str(path), metadata={"format": "pt"})
    return key


@contextlib.contextmanager
def expert_deltas_dropped():
    """PEFT's merge of the 3-D expert LoRA (lora.ParamWrapper) as a no-op: attention merges, experts do not."""
    from peft.tuners.lora.layer import ParamWrapper

    original = ParamWrapper.merge
    ParamWrapper.merge = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        ParamWrapper.merge = original


def run_checks(model_dir: str, adapter_dir: str) -> dict[str, Any]:
    """Load the base once (eager attention, the machine's dtype, as the merge does) and run every check."""
    from peft import PeftModel

    from pipeline_lib.fingerprint import verify_fingerprint
    from pipeline_lib.merge import DELTA_CHECK, EQUIVALENCE_CHECK, MergeSettings, merge_and_check
    from pipeline_lib.modeling import inference_precision, load_causal_lm
    from pipeline_lib.mxfp4 import expert_tensor_names, verify_released_load
    from pipeline_lib.probes import harmony_probe_ids

    precision = inference_precision()
    out: dict[str, Any] = {"device": precision.device, "compute_dtype": precision.torch_dtype_name}
    base = load_causal_lm(model_dir, precision)
    if expert_tensor_names(model_dir):
        out["released_layout_load"] = verify_released_load(model_dir, base)
    else:
        out["released_layout_load"] = {"status": "not an MXFP4 folder (bf16 layout)"}

    adapter = Path(adapter_dir)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    out["fingerprint"] = verify_fingerprint(model, adapter, strict=False)
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "one_expert_zeroed"
        key = zero_one_expert_tensor(adapter, broken)
        model.load_adapter(str(broken), adapter_name="broken")
        model.set_adapter("broken")
        control = verify_fingerprint(model, broken, strict=False)
        model.set_adapter("default")
        model.delete_adapter("broken")
    out["fingerprint_negative_control"] = {**control, "zeroed": key, "must_fail": True,
                                           "ok": control.get("passed") is False}

    probes = harmony_probe_ids()
    settings = MergeSettings()
    with expert_deltas_dropped():
        _, dropped = merge_and_check(model, probes, precision.torch_dtype_name, settings)
    out["merge_negative_control"] = {**dropped[DELTA_CHECK], "must_fail": True,
                                     "ok": dropped[DELTA_CHECK]["passed"] is False,
                                     "logits": dropped[EQUIVALENCE_CHECK],
                                     "what": "merge_and_unload with PEFT's expert (ParamWrapper) merge disabled"}
    out["passed"] = (out["fingerprint"].get("passed") is True and out["fingerprint_negative_control"]["ok"]
                     and out["merge_negative_control"]["ok"]
                     and out["released_layout_load"].get("passed", True) is True)
    return out


# ---------------------------------------------------------------- report


def _time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")


def phase_windows(log_text: str) -> list[dict[str, Any]]:
    """Per phase of one orchestrator log: start/end from its '[ts] ===== START x =====' and
    '[ts] ===== END x (status, elapsed ...' lines; a phase without an END line was cut off (killed)."""
    windows: list[dict[str, Any]] = []
    # phases: '===== START x =====' / '===== END x (status, ...'; the evaluation after them: 'START evaluation' /
    # 'END evaluation (N s)' (a SOFT step: it warns instead of failing).
    pattern = r"^\[([\d\- :]+)\] (?:===== (START|END) (\w+)(?: \((\w+))?|(START|END) (evaluation)\b)"
    for m in re.finditer(pattern, log_text, flags=re.M):
        stamp, kind, phase, status, eval_kind, eval_name = m.groups()
        if eval_name:
            kind, phase, status = eval_kind, eval_name, "ran"
        if kind == "START":
            windows.append({"phase": phase, "start": _time(stamp), "end": None, "status": "cut off"})
        elif windows and windows[-1]["phase"] == phase and windows[-1]["end"] is None:
            windows[-1].update(end=_time(stamp), status=status or "?")
    return windows


def gpu_samples(csv_path: Path | None) -> list[tuple[datetime, float]]:
    """nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits rows -> (time, GB)."""
    if csv_path is None or not csv_path.is_file():
        return []
    out = []
    for row in csv.reader(csv_path.read_text().splitlines()):
        try:
            stamp = datetime.strptime(row[0].strip().split(".")[0], "%Y/%m/%d %H:%M:%S")
            out.append((stamp, float(row[1]) / 1024))
        except (IndexError, ValueError):
            continue
    return out


def _peak(samples: list[tuple[datetime, float]], start: datetime, end: datetime | None) -> float | None:
    values = [gb for t, gb in samples if t >= start and (end is None or t <= end)]
    return round(max(values), 1) if values else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec) if isinstance(x, int | float) else str(x)


def build_report(workdir: Path, model: str, smoke_log: Path, gpu_csv: Path | None = None,
                 checks_file: Path | None = None, kill_phase: str = KILL_PHASE) -> dict[str, Any]:
    """Everything the smoke run showed, from the files it and the pipeline wrote."""
    paths = smoke_paths(workdir, model)
    events = [json.loads(line) for line in smoke_log.read_text().splitlines() if line.strip()]
    samples = gpu_samples(gpu_csv)
    phases: list[dict[str, Any]] = []
    for log in sorted(paths.logs.glob("tui_pipeline_*.log")):
        for w in phase_windows(log.read_text()):
            seconds = None if w["end"] is None else int((w["end"] - w["start"]).total_seconds())
            phases.append({"run": log.name, "phase": w["phase"], "status": w["status"], "seconds": seconds,
                           "peak_gpu_gb_nvidia_smi": _peak(samples, w["start"], w["end"])})
    run_dirs = {p.name: paths.run_dir(p.name) for p in pipeline_phases.TRAINED}
    for entry in phases:
        folder = run_dirs.get(entry["phase"])
        metrics = _read_json(folder / "final" / "phase_metrics.json") if folder else None
        throughput = (metrics or {}).get("throughput") or {}
        trained_here = entry["status"] in ("ran", "resumed")  # a skipped phase's metrics are another run's
        entry["first_step_seconds"] = throughput.get("first_step_seconds") if trained_here else None
        entry["peak_gpu_gb_torch"] = throughput.get("peak_memory_gb") if trained_here else None
    merge = _read_json(paths.merged_hf / "manifest.json") or {}
    export = _read_json(paths.run_dir(pipeline_phases.EXPORT.name) / "manifest.json") or {}
    killed = (_read_json(paths.run_dir(kill_phase) / "final" / "phase_metrics.json") or {}
              if kill_phase != "none" else {})
    ipo = _read_json(paths.run_dir(pipeline_phases.IPO.name) / "final" / "phase_metrics.json") or {}
    grpo = _read_json(paths.run_dir(pipeline_phases.GRPO.name) / "final" / "phase_metrics.json")
    return {
        "events": events,
        "phases": phases,
        "merge_checks": merge.get("checks"),
        "merge_adapter_fingerprint": merge.get("adapter_fingerprint"),
        "ipo_sft_adapter_fingerprint": ipo.get("sft_adapter_fingerprint"),
        pipeline_phases.EXPORT.name: {"passed": export.get("passed"), "source_adapter": export.get("source_adapter"),
                   "hf_fingerprint": ((export.get("hf") or {}).get("checks") or {}).get("adapter_fingerprint"),
                   "gguf_status": (export.get("gguf") or {}).get("status"),
                   "gguf_error": (export.get("gguf") or {}).get("error"),
                   "gguf_files": {q: {"passed": f.get("passed"), "size_gib": f.get("size_gib"),
                                      "failed": [k for k, v in (f.get("checks") or {}).items() if not v["passed"]]}
                                  for q, f in ((export.get("gguf") or {}).get("files") or {}).items()},
                   # the BF16 file's tight check with its tolerance parts, and the HF model's own bf16-vs-fp32
                   # distance that scales it (pipeline_lib.gguf_export.GgufSettings.gguf_bf16_sensitivity_factor)
                   "gguf_bf16_rel_median": ((((export.get("gguf") or {}).get("files") or {}).get("BF16") or {})
                                            .get("checks") or {}).get("logits_rel_median"),
                   "gguf_rounding_sensitivity": (export.get("gguf") or {}).get("rounding_sensitivity")},
        "kill_resume": {"phase": kill_phase, "resumed_from_checkpoint": killed.get("resumed_from_checkpoint"),
                        "resumed_from_step": killed.get("resumed_from_step"),
                        "global_step": killed.get("global_step"), "max_steps": killed.get("max_steps")},
        "checks": _read_json(checks_file) if checks_file else None,
        pipeline_phases.GRPO.name: None if grpo is None else {
            k: grpo.get(k) for k in ("global_step", "max_steps", "reward_accuracy", "reward", "lora_update_check",
                                     "backend", "training_path")},
    }


PHASE_OK = ("ran", "resumed", "skipped")
# Not judged on random weights: the quantized GGUF files' thresholds (configs/merge.yaml) are for trained weights; a
# random model has no structure for 4-bit quantisation to keep (smoke run L, H200: Q4_K_M correlation 0.922 < 0.95).
# The BF16 file holds exactly the saved weights and is judged (docs/BENCHMARKS.md "Reference precision").
NOT_JUDGED = "quantized GGUF files (Q4_K_M, MXFP4_MOE): their thresholds are for trained weights"


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """What the smoke run must show beyond exit codes: every phase of the last pipeline run ended (ran, resumed or
    skipped as done), the killed phase resumed from its checkpoint to its last step, the HF export passed and so did
    the BF16 GGUF (a warning for a user's export, a failure here: a first GPU run must say when conversion is off)."""
    failures = []
    runs = sorted({p["run"] for p in report["phases"]})
    last = [p for p in report["phases"] if runs and p["run"] == runs[-1]]
    failures += [f"{p['phase']}: {p['status']} in the last pipeline run" for p in last if p["status"] not in PHASE_OK]
    if last and last[-1]["phase"] != "evaluation":
        failures.append(f"the last pipeline run ended after {last[-1]['phase']}, before the evaluation")
    k = report["kill_resume"]
    if k["phase"] != "none" and (k["resumed_from_step"] is None or k["global_step"] != k["max_steps"]):
        failures.append(f"kill -9 + rerun ({k['phase']}): resumed from step {k['resumed_from_step']}, finished at "
                        f"{k['global_step']}/{k['max_steps']}")
    export = report.get(pipeline_phases.EXPORT.name) or {}
    if export.get("passed") is not True:
        failures.append("export: the HF export did not pass")
    bf16 = (export.get("gguf_files") or {}).get("BF16") or {}
    if bf16.get("passed") is not True:
        failures.append(f"export: the BF16 GGUF did not pass (GGUF {export.get('gguf_status')}, failed "
                        f"{bf16.get('failed')}, {(export.get('gguf_error') or '')[:200]})")
    return {"passed": not failures, "failures": failures, "not_judged": NOT_JUDGED}


def render(report: dict[str, Any]) -> str:
    lines = ["| run | phase | status | wall | first step (s) | peak GB (torch) | peak GB (nvidia-smi) |",
             "|---|---|---|---|---|---|---|"]
    for p in report["phases"]:
        wall = "n/a" if p["seconds"] is None else f"{p['seconds'] // 60}m{p['seconds'] % 60:02d}s"
        lines.append(f"| {p['run'].removeprefix('tui_pipeline_').removesuffix('.log')} | {p['phase']} | "
                     f"{p['status']} | {wall} | {_fmt(p['first_step_seconds'], '.1f')} | "
                     f"{_fmt(p['peak_gpu_gb_torch'], '.1f')} | {_fmt(p['peak_gpu_gb_nvidia_smi'], '.1f')} |")
    lines.append("")
    for e in report["events"]:
        lines.append(f"- {e['step']}: {e.get('status')} {_fmt(e.get('seconds'), '.0f')} s {e.get('note', '')}")
    merge = report.get("merge_checks") or {}
    d = merge.get("merged_weights_hold_delta")
    if d:
        lines.append(f"- merge, weights: {d.get('judged')}/{d.get('tensors')} tensors judged, worst ratio "
                     f"{_fmt(d['value'])} (must be within {_fmt(d['threshold'])} of 1; by kind "
                     f"{json.dumps(d.get('ratio_by_kind'))}); adapter retained in the compute dtype "
                     f"{_fmt(d.get('retained_in_compute_dtype'))}, after the save cast "
                     f"{_fmt(d.get('retained_after_save_cast'))} -> {'PASS' if d['passed'] else 'FAIL'}")
    m = merge.get("merged_equals_adapter")
    if m:
        verdict = ("PASS" if m["passed"] else "FAIL") + ("" if m.get("hard", True) else " (advisory in bf16)")
        lines.append(f"- merge, logits merged==adapter ({m.get('forward_dtype') or 'compute-dtype'} forward): "
                     f"rel_p90 {_fmt(m['value'])} vs tolerance "
                     f"{_fmt(m['threshold'])} = max"
                     f"({', '.join(f'{k} {_fmt(v)}' for k, v in (m.get('tolerance_parts') or {}).items())}); "
                     f"adapter effect {_fmt(m.get('adapter_effect_rel'))}, noise {_fmt(m.get('noise_rel'))} -> "
                     f"{verdict}")
    from pipeline_lib.fingerprint import describe

    for label, check in (("merge: tool-calling adapter fingerprint", report.get("merge_adapter_fingerprint")),
                         ("IPO: agent-SFT adapter fingerprint", report.get("ipo_sft_adapter_fingerprint")),
                         ("export: adapter fingerprint",
                          (report.get(pipeline_phases.EXPORT.name) or {}).get("hf_fingerprint"))):
        lines.append(f"- {label}: {describe(check) if check else 'not reached'}")
    export = report.get(pipeline_phases.EXPORT.name) or {}
    lines.append(f"- export: passed {export.get('passed')}, GGUF {export.get('gguf_status')} "
                 f"{json.dumps(export.get('gguf_files'))} {(export.get('gguf_error') or '')[:300]}")
    bf16 = export.get("gguf_bf16_rel_median")
    if bf16:
        sensitivity = export.get("gguf_rounding_sensitivity") or {}
        lines.append(f"- export: BF16 GGUF logits rel_median {bf16.get('value'):.4g} vs tolerance "
                     f"{bf16.get('threshold'):.4g} ({json.dumps(bf16.get('tolerance_parts'))}); the HF model's "
                     f"bf16-vs-fp32 rel_median {sensitivity.get('rel_median', 'not measured')}")
    k = report["kill_resume"]
    if k["phase"] == "none":
        lines.append("- kill -9 + rerun: not asked for (--kill-phase none)")
    elif k["global_step"] is None:
        lines.append(f"- kill -9 + rerun ({k['phase']}): {k['phase']} did not finish")
    else:
        lines.append(f"- kill -9 + rerun ({k['phase']}): resumed from step {k['resumed_from_step']} "
                     f"({k['resumed_from_checkpoint']}), finished at step {k['global_step']}/{k['max_steps']}")
    grpo = report.get(pipeline_phases.GRPO.name)
    if grpo:
        lora = grpo.get("lora_update_check") or {}
        lines.append(f"- GRPO: step {grpo.get('global_step')}/{grpo.get('max_steps')}, reward_accuracy "
                     f"{_fmt(grpo.get('reward_accuracy'))}, LoRA update check {lora.get('passed')}")
    checks = report.get("checks") or {}
    if checks:
        layout = checks.get("released_layout_load", {})
        lines.append(f"- released MXFP4 layout loads exactly: {layout.get('passed', layout.get('status'))} "
                     f"({layout.get('expert_tensors_checked', 0)} expert tensors, max |d| "
                     f"{_fmt(layout.get('max_abs_diff'))})")
        lines.append(f"- fingerprint via plain PEFT: {describe(checks['fingerprint'])}")
        neg = checks["fingerprint_negative_control"]
        lines.append(f"- negative control, {neg['zeroed']} zeroed: {describe(neg)} -> "
                     f"{'OK (fails as it must)' if neg['ok'] else 'NOT CAUGHT'}")
        neg = checks["merge_negative_control"]
        logits = neg.get("logits") or {}
        lines.append(f"- negative control, expert deltas dropped at merge: weights worst ratio {_fmt(neg['value'])} "
                     f"({json.dumps(neg.get('ratio_by_kind'))}) -> "
                     f"{'OK (fails as it must)' if neg['ok'] else 'NOT CAUGHT'}; logits rel_p90 "
                     f"{_fmt(logits.get('value'))} vs tolerance {_fmt(logits.get('threshold'))}")
    v = report.get("verdict")
    if v:
        lines.append(f"- verdict: {'PASS' if v['passed'] else 'FAIL: ' + '; '.join(v['failures'])} "
                     f"(not judged: {v['not_judged']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("checks")
    c.add_argument("--model", required=True)
    c.add_argument("--adapter", required=True)
    c.add_argument("--out", required=True)
    p = sub.add_parser("paths", help="KEY=value lines for scripts/gpu_smoke.sh")
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--model", required=True)
    p.add_argument("--kill-phase", default=KILL_PHASE)
    r = sub.add_parser("report")
    r.add_argument("--workdir", required=True, type=Path)
    r.add_argument("--model", required=True)
    r.add_argument("--smoke-log", required=True, type=Path)
    r.add_argument("--gpu-csv", type=Path)
    r.add_argument("--checks", type=Path)
    r.add_argument("--kill-phase", default=KILL_PHASE)
    r.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "checks":
        result = run_checks(args.model, args.adapter)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"smoke checks {'PASSED' if result['passed'] else 'FAILED'}: {args.out}")
        return 0 if result["passed"] else 1
    if args.command == "paths":
        print(shell_paths(args.workdir, args.model, args.kill_phase))
        return 0
    report = build_report(args.workdir, args.model, args.smoke_log, args.gpu_csv, args.checks, args.kill_phase)
    report["verdict"] = verdict(report)
    text = render(report)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0 if report["verdict"]["passed"] else 2  # 2: the report was written, the run did not show enough


if __name__ == "__main__":
    sys.exit(main())
