#!/usr/bin/env python3
"""Does the BF16 GGUF logits check still tell a mapping bug from a correct file at the real width?

The export's tight check (``pipeline_lib.gguf_export.validate_gguf``: BF16 GGUF vs the HF model's logits in fp32
arithmetic) was set on the tiny model, where a correct file measured 0.017 and the mapping controls 0.11-1.0; at the
real width a correct file measures 0.043-0.27 at the p90 and 0.035-0.037 at the median (docs/BENCHMARKS.md "BF16
GGUF controls"). This converts ``--model`` (a bf16 HF folder; an MXFP4 one is first saved as bf16) and copies of it
with one mapping bug each, exactly as the export does, validates each against the correct model's reference with
the shipped settings, and reports rel p90 / median / max, top-1 agreement and correlation:

- ``correct``: the folder as is;
- ``sinks_zeroed``: every ``self_attn.sinks`` zero (a converter that drops the attention sinks);
- ``gate_up_swapped``: the experts' interleaved gate and up columns exchanged (weights and biases);
- ``router_bias_zeroed``: every ``mlp.router.bias`` zero (a converter that drops the router bias).

    python3 scripts/bench_gguf_controls.py --model DIR --workdir DIR --out FILE.json [--controls a,b]

Each GGUF is deleted once validated (5.6 GB each at 2 layers). docs/BENCHMARKS.md "BF16 GGUF controls" has the runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

CONTROLS = ("sinks_zeroed", "gate_up_swapped", "router_bias_zeroed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="GPT-OSS HF folder (bf16 or MXFP4 layout)")
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="JSON report")
    p.add_argument("--controls", default=",".join(CONTROLS), help=f"comma list of {CONTROLS}")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all cores)")
    return p.parse_args(argv)


def broken_state(state: dict, control: str) -> dict:
    """``state`` with ``control``'s mapping bug; raises when the tensors it changes are absent."""
    import torch

    out = dict(state)
    if control == "sinks_zeroed":
        keys = [k for k in state if k.endswith("self_attn.sinks")]
        for k in keys:
            out[k] = torch.zeros_like(state[k])
    elif control == "gate_up_swapped":
        # GPT-OSS stores gate and up interleaved on the last dim: gate = [..., ::2], up = [..., 1::2]
        keys = [k for k in state if k.endswith(("mlp.experts.gate_up_proj", "mlp.experts.gate_up_proj_bias"))]
        for k in keys:
            t = state[k]
            swapped = torch.empty_like(t)
            swapped[..., ::2], swapped[..., 1::2] = t[..., 1::2], t[..., ::2]
            out[k] = swapped
    elif control == "router_bias_zeroed":
        keys = [k for k in state if k.endswith("mlp.router.bias")]
        for k in keys:
            out[k] = torch.zeros_like(state[k])
    else:
        raise ValueError(f"unknown control {control!r}; choose from {CONTROLS}")
    if not keys:
        raise ValueError(f"{control}: no tensor to change in this model")
    return out


def bf16_folder(model: Path, workdir: Path) -> Path:
    """``model`` itself when its weights are plain tensors; else (MXFP4 *_blocks/_scales) a bf16 copy under workdir."""
    config = json.loads((model / "config.json").read_text())
    if "quantization_config" not in config:
        return model
    from pipeline_lib.merge import save_tokenizer, strip_quantization_config
    from pipeline_lib.modeling import inference_precision, load_causal_lm

    out = workdir / "bf16"
    if not (out / "config.json").is_file():
        # as the merge writes its bf16 folder: weights, no quantization_config, the model's tokenizer + template
        load_causal_lm(model, inference_precision()).save_pretrained(out)
        strip_quantization_config(out)
        save_tokenizer(model, str(model), out)
    return out


def variant_folder(hf: Path, workdir: Path, control: str) -> Path:
    """A copy of ``hf`` (links for everything but the weight shards) with ``control`` applied to every shard."""
    from safetensors.torch import load_file, save_file

    out = workdir / control
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    changed = 0
    for item in hf.iterdir():
        if item.suffix == ".safetensors":
            state = load_file(str(item))
            try:
                new = broken_state(state, control)
                changed += 1
            except ValueError:
                new = state  # this shard holds none of the control's tensors
            save_file(new, str(out / item.name), metadata={"format": "pt"})
        elif item.is_file():
            (out / item.name).symlink_to(item.resolve())
    if not changed:
        raise SystemExit(f"{control}: no shard of {hf} holds the tensors it changes")
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline_lib.gguf_export import (
        GgufSettings,
        convert_to_gguf,
        hf_reference_logits,
        resolve_llama_cpp,
        validate_gguf,
    )

    args = parse_args(argv)
    controls = [c.strip() for c in args.controls.split(",") if c.strip()]
    args.workdir.mkdir(parents=True, exist_ok=True)
    settings = GgufSettings(threads=args.threads)
    t0 = time.time()
    hf = bf16_folder(args.model, args.workdir)
    config = json.loads((hf / "config.json").read_text())
    reference = hf_reference_logits(hf)
    tools = resolve_llama_cpp()
    report = {"model": str(args.model), "hf_folder": str(hf), "llama_cpp_commit": tools.commit,
              "thresholds": settings.thresholds(), "reference_seconds": round(time.time() - t0, 1), "variants": {}}
    for name in ["correct", *controls]:
        t = time.time()
        folder = hf if name == "correct" else variant_folder(hf, args.workdir, name)
        gguf = convert_to_gguf(folder, args.workdir / f"{name}-BF16.gguf", tools)
        result = validate_gguf(gguf, reference, config, tools, settings, quantized=False)
        gguf.unlink()
        if folder != hf:
            shutil.rmtree(folder)
        logits = result.get("logits", {})
        entry = {"passed": result["passed"], "seconds": round(time.time() - t, 1),
                 "failed_checks": sorted(k for k, v in result["checks"].items() if not v["passed"]),
                 **{k: logits.get(k) for k in ("rel_p90", "rel_median", "rel_max_abs_diff", "argmax_agreement",
                                               "correlation")}}
        report["variants"][name] = entry
        print(f"[gguf-controls] {name}: {json.dumps(entry)}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")  # partial results survive
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
