#!/usr/bin/env python3
"""How far apart two stacks' logits are for the same saved adapter, and which rule tells a misread adapter from them.

An adapter trained by one stack (Unsloth's expert kernels) is re-checked by the loaders on another (transformers +
PEFT): ``pipeline_lib.fingerprint.verify_fingerprint``. For each ``--adapter`` (saved with its training process's
fingerprint) this loads it as IPO does (``ipo.load_adapter_policy`` on ``--model``), recomputes the probe logits and
reports, per position over the recorded probes, the median and the 90th percentile of rel (``probes.
logits_agreement``) for: the adapter as saved; the base (adapter disabled); this process's layout noise (the probes
re-run with a suffix); and misread copies of the adapter, made in memory, that a correct check must fail:

- ``experts_B_transposed``: every expert ``lora_B`` read expert-major instead of PEFT's rank-major layout (Unsloth
  writes ``lora_B_layout: rank_major`` into the config; a loader that read it the other way gets this);
- ``experts_B_zeroed``: the experts' adapter lost (``fingerprint._expert_lora_off``, the switch the check's own
  ``expert_effect`` uses);
- ``scale_x0.5``: every ``lora_B`` halved (a misread alpha/rank scaling);
- ``one_expert_tensor_zeroed``: layer 0's first expert ``lora_B`` zero (the smoke run's same-stack control).

Each row says what each candidate cross-stack rule (RULES below) decides: the adapter row must pass, the misread rows
must fail (the single zeroed tensor is reported, not required: its effect may be under any cross-stack noise).
docs/BENCHMARKS.md "Fingerprint across stacks" has the runs.

    python3 scripts/bench_fingerprint_stack.py --model DIR --adapter DIR [--adapter DIR ...] --out FILE.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline_lib.fingerprint import FingerprintSettings, _expert_lora_off  # noqa: E402 (after the path insert)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the base the adapters were trained on")
    p.add_argument("--adapter", required=True, action="append", type=Path,
                   help="a saved adapter with its logits fingerprint (repeatable)")
    p.add_argument("--out", required=True, type=Path, help="JSON report")
    return p.parse_args(argv)


def _expert_b(model) -> list[tuple[str, object, int]]:
    """(name, lora_B weight, num_experts) of every expert ParamWrapper in ``model``."""
    found = []
    for name, module in model.named_modules():
        if getattr(module, "num_experts", 1) > 1 and hasattr(module, "lora_B") and "default" in module.lora_B:
            found.append((name, module.lora_B["default"].weight, int(module.num_experts)))
    if not found:
        raise SystemExit("no expert LoRA (PEFT ParamWrapper with num_experts > 1) in the loaded adapter")
    return found


@contextlib.contextmanager
def misread(model, kind: str):
    """Change the loaded adapter in place as a misreading loader would; restored on exit."""
    import torch

    saved = {id(p): p.detach().clone() for _, p in model.named_parameters() if "lora_B" in _}
    params = {id(p): p for _, p in model.named_parameters() if "lora_B" in _}
    try:
        with torch.no_grad():
            if kind == "experts_B_transposed":
                for _, weight, experts in _expert_b(model):
                    out, rank_x_experts = weight.shape
                    rank = rank_x_experts // experts
                    # PEFT reads B as (out, rank, experts); read as (out, experts, rank) instead
                    weight.copy_(weight.reshape(out, rank, experts).transpose(1, 2).reshape(out, rank_x_experts))
            elif kind == "experts_B_zeroed":
                pass  # the check's own switch (scaling 0), entered below
            elif kind == "one_expert_tensor_zeroed":
                _expert_b(model)[0][1].zero_()
            elif kind == "scale_x0.5":
                for p in params.values():
                    p.mul_(0.5)
            else:
                raise ValueError(kind)
        with _expert_lora_off(model) if kind == "experts_B_zeroed" else contextlib.nullcontext():
            yield
    finally:
        with torch.no_grad():
            for key, p in params.items():
                p.copy_(saved[key])


# Candidate cross-stack rules: (statistic judged, tolerance from the rows and the layout noise). "shipped" is
# verify_fingerprint's cross-stack rule, built from its FingerprintSettings (bf16), so the two cannot drift apart;
# "p90_base1.5" is what it shipped before 2026-11-29, "p90_base3" the looser p90 alternative.
_S = FingerprintSettings()
RULES = {
    "p90_base1.5": ("rel_p90", lambda rows, noise: max(0.1, 2 * noise["rel_p90"], 1.5 * rows["base"]["rel_p90"])),
    "p90_base3": ("rel_p90", lambda rows, noise: max(0.1, 2 * noise["rel_p90"], 3.0 * rows["base"]["rel_p90"])),
    "shipped": ("rel_median", lambda rows, noise: max(_S.rel_tol["bfloat16"], _S.noise_factor * noise["rel_median"],
                                                      _S.stack_factor * rows["base"]["rel_median"])),
}


def judge_rows(rows: dict, recorded: dict) -> dict[str, dict[str, str]]:
    noise = {"rel_p90": max(recorded["noise_rel"], rows["noise_here"]["rel_p90"]),
             "rel_median": max(recorded.get("noise_rel_median", recorded["noise_rel"]),
                               rows["noise_here"]["rel_median"])}
    out = {}
    for rule, (statistic, tolerance) in RULES.items():
        tol = tolerance(rows, noise)
        out[rule] = {row: ("pass" if rows[row][statistic] <= tol else "FAIL") for row in rows
                     if row not in ("base", "noise_here", "adapter_effect_here")}
        out[rule]["tolerance"] = f"{tol:.4f}"
    return out


def stats(reference, candidate) -> dict[str, float]:
    from pipeline_lib.probes import logits_agreement

    a = logits_agreement(reference, candidate)
    return {k: round(float(a[k]), 5) for k in ("rel_median", "rel_p90", "rel_max_abs_diff", "argmax_agreement")}


def bench_adapter(model_dir: str, adapter: Path) -> dict:
    from safetensors.torch import load_file

    from pipeline_lib import ipo
    from pipeline_lib.fingerprint import (
        FINGERPRINT_FILE,
        FINGERPRINT_JSON,
        _adapter_disabled,
        _eval_mode,
        _logits,
        verify_fingerprint,
    )
    from pipeline_lib.modeling import detect_precision
    from pipeline_lib.probes import eager_attention

    t0 = time.time()
    recorded = load_file(str(adapter / FINGERPRINT_FILE))
    summary = json.loads((adapter / FINGERPRINT_JSON).read_text())
    ids, probes, start = recorded["probe_ids"].tolist(), [], 0
    for n in recorded["probe_lengths"].tolist():
        probes.append(ids[start:start + n])
        start += n
    columns = recorded["columns"]
    policy = ipo.load_adapter_policy(adapter, model_dir, detect_precision(), is_trainable=False)
    check = verify_fingerprint(policy, adapter, strict=False)  # the shipped rule, as IPO runs it

    def logits(suffix=None):
        with _eval_mode(policy), eager_attention(policy):
            return _logits(policy, probes, suffix)

    full = logits()
    with _eval_mode(policy), eager_attention(policy), _adapter_disabled(policy):
        base = _logits(policy, probes)
    shifted = logits(probes[0])
    rows = {
        "adapter": stats(recorded["adapter"], full[:, columns]),
        "base": stats(recorded["base"], base[:, columns]),
        "noise_here": stats(full, shifted),
        "adapter_effect_here": stats(full, base),
    }
    for kind in ("experts_B_transposed", "experts_B_zeroed", "scale_x0.5", "one_expert_tensor_zeroed"):
        with misread(policy, kind):
            rows[kind] = stats(recorded["adapter"], logits()[:, columns])
    return {"adapter": str(adapter), "recorded": summary, "shipped_check": check, "rows": rows,
            "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    results = []
    for adapter in args.adapter:
        result = bench_adapter(args.model, adapter)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        result["rules"] = judge_rows(result["rows"], result["recorded"])
        results.append(result)
        print(f"== {adapter} (recorded by {result['recorded'].get('backend')}, effect "
              f"{result['recorded']['adapter_effect_rel']:.3g}, noise recorded {result['recorded']['noise_rel']:.3g})")
        print(f"{'row':28s} {'median':>8s} {'p90':>8s} {'max':>8s} {'argmax':>7s}  " + "  ".join(RULES))
        for row, s in result["rows"].items():
            verdicts = "  ".join(f"{result['rules'][rule].get(row, '-'):>{len(rule)}s}" for rule in RULES)
            print(f"{row:28s} {s['rel_median']:8.4f} {s['rel_p90']:8.4f} {s['rel_max_abs_diff']:8.4f} "
                  f"{s['argmax_agreement']:7.3f}  {verdicts}")
        print("tolerances: " + ", ".join(f"{r} {result['rules'][r]['tolerance']}" for r in RULES))
        from pipeline_lib.fingerprint import describe

        print(f"shipped check: {describe(result['shipped_check'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "results": results}, indent=2, default=str) + "\n")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
