#!/usr/bin/env python3
"""Agent SFT resumed from checkpoint-2 must continue the uninterrupted run, optimizer state included
(pipeline_lib/resume_check.py says how: straight, resumed, and a control resumed without optimizer.pt).

    # the GPU question of docs/BENCHMARKS.md run 6: does bitsandbytes' 8-bit AdamW state survive a resume?
    python scripts/check_optimizer_resume.py --optim adamw_bnb_8bit --layers 2 --workdir /tmp/rc --out $OUT/rc.json
    # CPU: the tiny model and the default optimizer (the same three runs, ~3 minutes on 2 cores)
    python scripts/check_optimizer_resume.py --tiny --optim adamw_torch --workdir /tmp/rc

Builds the model (--layers N real-shape layers, random bf16, or --tiny), prepares the bundled sample data
(--quick-test sizes) and runs scripts/14_train_core_agent.py three times with its YAML and the flags below. Exit 0
when the verdict passes; the JSON holds every loss. --workdir is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipeline_lib import phases, resume_check  # noqa: E402


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"{' '.join(cmd[:3])} ... exited {proc.returncode}; log {log}")
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--optim", required=True, help="the phase's --optim (transformers' names)")
    p.add_argument("--layers", type=int, default=2, help="real-shape layers of the random model (GPU)")
    p.add_argument("--tiny", action="store_true", help="the tiny GPT-OSS instead (CPU)")
    p.add_argument("--model", default=None, help="an existing model folder instead of building one")
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--max-seq-length", type=int, default=512)
    p.add_argument("--workdir", default="/tmp/optimizer_resume")
    p.add_argument("--out", default=None, help="the verdict and every loss as JSON")
    p.add_argument("--keep", action="store_true", help="keep --workdir")
    args = p.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    times: dict[str, float] = {}
    model = Path(args.model) if args.model else work / "model"
    if not args.model:
        if args.tiny:
            from pipeline_lib.tiny_model import build_tiny_gpt_oss

            build_tiny_gpt_oss(str(model))
        else:
            times["build"] = run([py, "scripts/make_random_gpt_oss.py", "--output_dir", str(model), "--layers",
                                  str(args.layers), "--layout", "bf16"], work / "build.log")
    data = work / "data"
    times["data"] = run([py, f"scripts/{phases.DATA_PREP.script}", "--source", "local", "--local-dir", "data/samples",
                         "--quick-test", "--output-dir", str(data)], work / "data.log")
    phase = phases.AGENT_SFT
    base = [py, f"scripts/{phase.script}", "--config", f"configs/{phase.config}", "--base_model", str(model),
            "--train_data_path", str(data / str(phase.dataset) / "train"), "--max_seq_length",
            str(args.max_seq_length), "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1",
            "--max_steps", str(args.max_steps), "--save_steps", "2", "--logging_steps", "1", "--optim", args.optim]
    # run folders as the orchestrator lays them out (<workdir>/checkpoints/<run>), so each phase's TensorBoard
    # events go to <workdir>/logs (live.logs_dir_for), not to logs/ under the repository
    runs = work / "checkpoints"
    straight = runs / "straight"
    times["straight"] = run([*base, "--output_dir", str(straight)], work / "straight.log")
    last = f"checkpoint-{args.max_steps}"
    losses = {"straight": resume_check.losses_by_step(straight / last / "trainer_state.json")}
    for name in ("resumed", "control"):
        out = runs / name
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(straight / "checkpoint-2", out / "checkpoint-2")
        if name == "control":
            (out / "checkpoint-2" / "optimizer.pt").unlink()
        times[name] = run([*base, "--output_dir", str(out), "--resume_from_checkpoint", str(out / "checkpoint-2")],
                          work / f"{name}.log")
        losses[name] = resume_check.losses_by_step(out / last / "trainer_state.json")
    verdict = resume_check.compare(losses["straight"], losses["resumed"], losses["control"])
    metrics = json.loads((straight / "final" / "phase_metrics.json").read_text())
    record = {"verdict": verdict, "optim": args.optim, "losses": losses,
              "seconds": {k: round(v, 1) for k, v in times.items()},
              "backend": metrics.get("backend"), "backend_reason": metrics.get("backend_reason"),
              "model": "tiny" if args.tiny else args.model or f"random bf16, {args.layers} real-shape layers",
              "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    text = json.dumps(record, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"optimizer resume ({args.optim}): {'PASSED' if verdict['passed'] else 'FAILED'}: {verdict['reason']}")
    return 0 if verdict["passed"] else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
