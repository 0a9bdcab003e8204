"""H100 check of Phase 1.5 on the real shape: merge a random r=64 attention+experts LoRA into a GPT-OSS-20B-shaped
random bf16 model with the real phase script, and report every manifest check and the time it took.

    python scripts/bench_gpu_merge.py --workdir /tmp/bench [--b-std 0.01] [--layers 12] --out $OUT

The base and the merged model are both on disk at the end (2 x 39 GB for 24 layers): on a 64 GB disk use --layers 12
(every layer at its real shape, half of them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def make_adapter(model_dir: Path, adapter_dir: Path, r: int, b_std: float) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from pipeline_lib.modeling import load_causal_lm

    model = load_causal_lm(model_dir)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, b_std, generator=generator)
    peft_model.save_pretrained(str(adapter_dir))
    del peft_model, model
    torch.cuda.empty_cache()


def main() -> None:
    from bench_gpu_sft import build_random_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/bench")
    parser.add_argument("--r", type=int, default=64)
    parser.add_argument("--b-std", type=float, default=0.01)
    parser.add_argument("--layers", type=int, default=None, help="build the random model with this many layers")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    work = Path(args.workdir)
    suffix = f"-{args.layers}l" if args.layers else ""
    model_dir, adapter_dir, merged_dir = (work / f"gpt-oss-20b-random{suffix}", work / f"adapter{suffix}",
                                          work / f"merged{suffix}")
    if not (model_dir / "config.json").is_file():
        build_random_model(model_dir, REPO / "configs" / "gpt-oss-20b", args.layers)
    t0 = time.perf_counter()
    make_adapter(model_dir, adapter_dir, args.r, args.b_std)
    print(f"adapter r={args.r} b_std={args.b_std} in {time.perf_counter() - t0:.0f}s", flush=True)
    cmd = [sys.executable, str(REPO / "scripts" / "19_merge_adapter.py"), "--adapter_path", str(adapter_dir),
           "--base_model", str(model_dir), "--output_dir", str(merged_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    Path(args.out, "merge.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr[-20000:])
    manifest_path = merged_dir / "hf" / "manifest.json"
    result = {"returncode": proc.returncode, "wall_seconds": round(wall, 1), "r": args.r, "b_std": args.b_std,
              "layers": args.layers or 24}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        result["passed"] = manifest["passed"]
        result["checks"] = manifest["checks"]
    Path(args.out, "bench_merge_results.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"merge rc={proc.returncode} wall={wall:.0f}s passed={result.get('passed')}")
    for name, entry in result.get("checks", {}).items():
        print(f"  {name}: value={entry.get('value')} threshold={entry.get('threshold')} passed={entry.get('passed')}"
              + (f" effect={entry.get('adapter_effect_rel')}" if "adapter_effect_rel" in entry else ""))


if __name__ == "__main__":
    main()
