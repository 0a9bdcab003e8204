#!/usr/bin/env python3
"""How far the logits checks' reference forward is from fp32, on a random-weight GPT-OSS at the real width.

Measures, on the machine's device (docs/BENCHMARKS.md "Reference precision" has the runs):
1. forward: the bf16 model's plain forward and its ``probes.float32_forward`` against the same bf16 weights held and
   computed in fp32 (``--skip-fp32-model`` when fp32 weights do not fit);
2. merge: merged vs base+adapter for a random LoRA (attention + expert tensors, B ~ N(0, --b-std)), a correct merge
   and one with the expert deltas dropped, each with a bf16 forward and with ``float32_forward``: the check is only
   useful where the correct merge lands far below the dropped one;
3. with ``--export``: the adapter saved as ``<workdir>/checkpoints/tool_calling_sft/final`` and exported by
   ``scripts/19_merge_adapter.py --export`` (merge, HF checks, BF16/Q4_K_M/MXFP4_MOE GGUF validated by llama.cpp
   against the HF reference); its manifest's checks are copied into the output, and the BF16 GGUF's logits are
   compared with the exported model's plain forward and its ``float32_forward`` -- and with ``--cpu-reference``
   with the exported model loaded in true fp32 on the CPU (the reference the CUDA forwards are meant to equal).
``--adapter DIR``: export a trained adapter (a phase's ``final/``) instead of the random one; item 2 is skipped.

    python3 scripts/bench_reference_precision.py --model DIR --workdir DIR --out FILE.json [--export]
        [--adapter DIR] [--cpu-reference] [--skip-fp32-model]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="GPT-OSS folder (scripts/make_random_gpt_oss.py)")
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="JSON report")
    p.add_argument("--b-std", type=float, default=0.02, help="std of the random LoRA B (A is PEFT's init)")
    p.add_argument("--skip-fp32-model", action="store_true", help="no fp32 copy of the model (item 1 skipped)")
    p.add_argument("--export", action="store_true", help="also run 19_merge_adapter.py --export on the adapter")
    p.add_argument("--adapter", type=Path, help="a trained adapter folder to export instead of the random one")
    p.add_argument("--cpu-reference", action="store_true",
                   help="also compare the BF16 GGUF with the export loaded in fp32 on the CPU")
    return p.parse_args(argv)


def random_adapter(model, b_std: float, seed: int = 0):
    """The pipeline's own LoRA targets (attention + the experts' 3-D parameters) at r=8, B random (PEFT zeroes it)."""
    import torch
    from peft import get_peft_model

    from pipeline_lib.unsloth_utils import hf_lora_config

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, hf_lora_config(8))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, b_std)
    return peft_model.eval()


def main(argv: list[str] | None = None) -> int:
    import torch

    from pipeline_lib import phases
    from pipeline_lib.modeling import Precision, inference_precision, load_causal_lm
    from pipeline_lib.probes import harmony_probe_ids, logits_agreement, probe_logits
    from pipeline_lib.provenance import provenance
    from pipeline_lib.smoke import expert_deltas_dropped

    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    precision = inference_precision()
    probes = harmony_probe_ids()
    cuda = precision.device == "cuda"
    report: dict = {"model": args.model, "device": precision.device, "weights_dtype": precision.torch_dtype_name,
                    "gpu": torch.cuda.get_device_name(0) if cuda else None, "b_std": args.b_std,
                    "probe_tokens": sum(map(len, probes)), "provenance": provenance({"argv": sys.argv[1:]})}

    def log(message: str) -> None:
        print(f"[reference-precision] {message}", flush=True)

    def peak_gb() -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None

    # 1. the forward alone
    if not args.skip_fp32_model:
        t = time.time()
        # eager attention and eager experts, TF32 off: the plainest fp32 forward there is
        fp32_model = load_causal_lm(args.model, Precision(precision.device, precision.bf16, "float32", "eager",
                                                          "eager")).eval()
        torch.set_float32_matmul_precision("highest")
        truth = probe_logits(fp32_model, probes)
        fp32_state = {k: v.detach().float().cpu() for k, v in [*fp32_model.state_dict().items(),
                                                                 *fp32_model.named_buffers()]}
        del fp32_model
        if cuda:
            torch.cuda.empty_cache()
        log(f"fp32 model forward ({time.time() - t:.0f} s)")
    model = load_causal_lm(args.model, precision).eval()
    if not args.skip_fp32_model:
        # Do the two loads hold the same values? (on the H200 their forwards differed by more than on the CPU)
        here = dict([*model.state_dict().items(), *model.named_buffers()])
        diffs = sorted(((float((here[k].float().cpu() - v).abs().max()) if k in here else float("inf"), k,
                         str(here[k].dtype) if k in here else None) for k, v in fp32_state.items()), reverse=True)
        report["loads_differ"] = [{"tensor": k, "max_abs_diff": d, "dtype_here": dt} for d, k, dt in diffs[:8]
                                  if d > 0]
        log(f"fp32 load vs this load, largest differences: {report['loads_differ'] or 'none'}")
        del fp32_state
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    plain = probe_logits(model, probes)
    plain_peak = peak_gb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.time()
    upcast = probe_logits(model, probes, float32=True)
    report["forward"] = {"float32_forward_seconds": round(time.time() - t, 2), "peak_gb_plain": plain_peak,
                         "peak_gb_float32_forward": peak_gb()}
    if not args.skip_fp32_model:
        report["forward"]["plain_vs_fp32_model"] = logits_agreement(truth, plain)
        report["forward"]["float32_forward_vs_fp32_model"] = logits_agreement(truth, upcast)
    log(f"forward: {json.dumps(report['forward'])}")

    # 2. the merge, correct and with the expert deltas dropped, under both forwards
    merge_key, export_key = phases.MERGE.name, phases.EXPORT.name  # the report's keys
    report[merge_key] = {}
    if args.adapter is not None:
        import shutil

        adapter_dir = phases.TOOL_CALLING.run_dir(args.workdir, "bench") / "final"
        shutil.rmtree(adapter_dir, ignore_errors=True)
        shutil.copytree(args.adapter, adapter_dir)
        report["adapter"] = str(args.adapter)
    for case in () if args.adapter is not None else ("correct", "experts_dropped"):
        model = model if case == "correct" else load_causal_lm(args.model, precision).eval()
        peft_model = random_adapter(model, args.b_std)
        if case == "correct":
            adapter_dir = phases.TOOL_CALLING.run_dir(args.workdir, "bench") / "final"
            peft_model.save_pretrained(str(adapter_dir))
        logits = {}
        for f32 in (False, True):
            with peft_model.disable_adapter():
                logits["base", f32] = probe_logits(peft_model, probes, float32=f32)
            logits["adapter", f32] = probe_logits(peft_model, probes, float32=f32)
        if case == "correct":
            merged = peft_model.merge_and_unload().eval()
        else:
            with expert_deltas_dropped():
                merged = peft_model.merge_and_unload().eval()
        entry = {}
        for f32 in (False, True):
            reference = logits["adapter", f32]
            agreement = logits_agreement(reference, probe_logits(merged, probes, float32=f32))
            entry["float32_forward" if f32 else "bf16_forward"] = {
                "merged_vs_adapter_rel_p90": agreement["rel_p90"],
                "merged_vs_adapter_rel_median": agreement["rel_median"],
                "argmax_agreement": agreement["argmax_agreement"],
                "adapter_effect_rel_p90": logits_agreement(reference, logits["base", f32])["rel_p90"]}
        report[merge_key][case] = entry
        log(f"{merge_key} {case}: {json.dumps(entry)}")
        del merged, peft_model, model
        if cuda:
            torch.cuda.empty_cache()

    # 3. the export through the phase script
    if args.export:
        out_dir = phases.EXPORT.run_dir(args.workdir, "bench")
        cmd = [sys.executable, str(REPO_ROOT / "scripts" / "19_merge_adapter.py"), "--config",
               str(REPO_ROOT / "configs" / "merge.yaml"), "--export", "--checkpoints_dir",
               str(adapter_dir.parents[1]), "--model", args.model, "--output_dir", str(out_dir)]
        t = time.time()
        result = subprocess.run(cmd + ["--keep-bf16-gguf"], capture_output=True, text=True)
        manifest_path = out_dir / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        gguf = manifest.get("gguf", {})
        report[export_key] = {
            "rc": result.returncode, "seconds": round(time.time() - t), "last_line": result.stdout.strip()[-400:],
            "stderr_tail": result.stderr[-1500:] if result.returncode else "",
            "hf_checks": {k: {f: v.get(f) for f in ("value", "threshold", "passed", "forward_dtype")}
                          for k, v in manifest.get("hf", {}).get("checks", {}).items() if isinstance(v, dict)},
            "gguf_status": gguf.get("status"),
            "gguf": {name: {"passed": f.get("passed"), "logits": f.get("logits")}
                     for name, f in gguf.get("files", {}).items()}}
        log(f"{export_key} rc={result.returncode} in {report[export_key]['seconds']} s: gguf {gguf.get('status')}")
        bf16_gguf = gguf.get("files", {}).get("BF16", {}).get("path")
        if bf16_gguf and Path(bf16_gguf).is_file():  # llama.cpp's logits against each HF forward
            from pipeline_lib.gguf_export import llama_logits
            from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

            tokenizer = load_gpt_oss_tokenizer(out_dir / "hf")
            texts = [tokenizer.decode(ids, skip_special_tokens=False) for ids in probes]
            llama = torch.as_tensor(llama_logits(Path(bf16_gguf), probes, texts, 8)["logits"])
            merged = load_causal_lm(out_dir / "hf", precision).eval()
            width = min(llama.shape[-1], plain.shape[-1])
            versus = {"plain": probe_logits(merged, probes), "float32_forward": probe_logits(merged, probes,
                                                                                              float32=True)}
            del merged
            if args.cpu_reference:  # the export's bf16 weights, held and computed in fp32 on the CPU
                cpu = load_causal_lm(out_dir / "hf", Precision("cpu", False, "float32", "eager", "eager")).eval()
                versus["cpu_fp32"] = probe_logits(cpu, probes)
                del cpu
                report[export_key]["float32_forward_vs_cpu_fp32"] = logits_agreement(
                    versus["cpu_fp32"].float(), versus["float32_forward"].float().cpu())
            report[export_key]["bf16_gguf_vs"] = {k: logits_agreement(v[:, :width].float().cpu(), llama[:, :width])
                                                for k, v in versus.items()}
            # per position (max |d| over the vocabulary / the reference's std, as logits_agreement): where do they
            # differ -- a few routing flips or every position?
            report[export_key]["bf16_gguf_rel_per_position"] = {
                k: [round(float(x), 4) for x in (v[:, :width] - llama[:, :width]).abs().amax(-1) / v[:, :width].std()]
                for k, v in versus.items()}
            log(f"BF16 GGUF vs HF: {json.dumps(report[export_key]['bf16_gguf_vs'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
