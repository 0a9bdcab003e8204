"""H100 bench: run a training phase script itself on a GPT-OSS-20B-shaped random model.

    python scripts/bench_gpu_sft.py --workdir /tmp/bench --backends unsloth,hf --steps 20 --seq 4096 --out $OUT
    python scripts/bench_gpu_sft.py --phase 2 --backends unsloth --steps 6 --seq 32768 --doc-tokens 3000

Phase 1 = scripts/13_train_lang_adapter.py (LoRA r64, one conversation per row); phase 2 =
scripts/14_train_core_agent.py (LoRA r128 on --base_model, conversations of ~--doc-tokens packed into --seq rows).

1. Builds a bf16 GptOssForCausalLM from configs/gpt-oss-20b/config.json directly on the GPU (random weights, real
   shape: 20,914,757,184 parameters, ~39 GB) and saves it with the offline tokenizer (skipped if already there).
2. Writes a synthetic Harmony dataset. Phase 1: rows exceed --seq tokens, so every step trains exactly batch x seq
   tokens (assistant-only loss: the long part is the assistant's final answer). Phase 2: rows of ~--doc-tokens,
   which the phase packs into --seq rows (its packed-attention check runs on the real model first).
3. Runs the real phase script once per backend and collects phase_metrics.json (trainable parameters, tokens/s
   median after the first step, peak memory), printing a table and writing bench_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = ("alpha beta gamma delta parser token buffer index stream value result error module function "
         "return struct match vector string config build test cargo crate async await trait impl").split()


def build_random_model(model_dir: Path, config_dir: Path, num_layers: int | None = None) -> float:
    import torch
    from transformers import AutoConfig, GptOssForCausalLM

    from pipeline_lib.tokenizer import save_gpt_oss_tokenizer

    t0 = time.perf_counter()
    config = AutoConfig.from_pretrained(str(config_dir))
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    if num_layers:  # the real per-layer shape, fewer layers (the lent GPU machine has a 64 GB disk)
        config.num_hidden_layers = num_layers
        config.layer_types = config.layer_types[:num_layers]
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = GptOssForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir, safe_serialization=True, max_shard_size="5GB")
    save_gpt_oss_tokenizer(model_dir)
    del model
    torch.cuda.empty_cache()
    print(f"random gpt-oss-20b shape: {n:,} params saved to {model_dir} in {time.perf_counter() - t0:.0f}s",
          flush=True)
    return time.perf_counter() - t0


def make_dataset(data_dir: Path, rows: int, words_per_row: int, repeat: bool = False) -> None:
    """Synthetic Harmony rows; ``repeat``: every row the same text (a repeated batch: the loss must fall)."""
    from datasets import Dataset

    rng = random.Random(0)
    texts = []
    for i in range(rows):
        if repeat:
            rng = random.Random(0)
        answer = " ".join(rng.choice(WORDS) for _ in range(words_per_row))
        texts.append(
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
            "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
            "Channel must be included for every message.<|end|>"
            f"<|start|>user<|message|>Explain module {0 if repeat else i}.<|end|>"
            f"<|start|>assistant<|channel|>final<|message|>{answer}<|return|>"
        )
    Dataset.from_dict({"text": texts, "source": ["bench"] * rows}).save_to_disk(str(data_dir))


def run_phase(phase: int, backend: str, model_dir: Path, data_dir: Path, out_dir: Path, steps: int, seq: int,
              batch: int, extra: list[str], timeout: int) -> dict:
    if phase == 1:
        head = ["13_train_lang_adapter.py", "--model_name_or_path", str(model_dir), "--lora_r", "64"]
    else:
        head = ["14_train_core_agent.py", "--base_model", str(model_dir), "--no-merge-lang-adapter",
                "--eval_strategy", "no", "--lora_r", "128"]
    cmd = [sys.executable, str(REPO / "scripts" / head[0]), *head[1:], "--train_data_path", str(data_dir),
           "--per_device_train_batch_size", str(batch), "--gradient_accumulation_steps", "1",
           "--max_steps", str(steps), "--num_train_epochs", "1", "--output_dir", str(out_dir),
           "--save_steps", "100000", "--max_seq_length", str(seq), "--backend", backend,
           "--logging_steps", "1", *extra]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as err:  # the phase was killed; what it logged and saved is still read
        rc = f"killed after {timeout}s (--timeout)"
        stdout, stderr = _text(err.stdout), _text(err.stderr)
    wall = time.perf_counter() - t0
    log = out_dir.parent / f"{out_dir.name}.log"
    log.write_text(stdout + "\n--- stderr ---\n" + stderr)
    result = {"backend": backend, "returncode": rc, "wall_seconds": round(wall, 1), "log": str(log)}
    metrics_path = out_dir / "final" / "phase_metrics.json"
    if metrics_path.is_file():
        result["metrics"] = json.loads(metrics_path.read_text())
        result.update(loss_summary(out_dir / "final" / "trainer_state.json"))
    else:
        result["stderr_tail"] = stderr[-3000:]
        result.update(loss_summary(None, stdout + stderr))  # killed or failed: the losses it logged so far
    return result


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def loss_summary(state_path: Path | None, log: str = "") -> dict:
    """Training losses per step from trainer_state.json (or, without it, from the Trainer's logged dicts in ``log``),
    whether all are finite, and whether the loss fell (mean of the last 5 logged losses below the mean of the first
    5: on a repeated batch a working adapter must learn it)."""
    import math
    import re

    if state_path is not None and state_path.is_file():
        history = json.loads(state_path.read_text()).get("log_history", [])
        losses = [e["loss"] for e in history if "loss" in e]
    else:
        losses = [float(x) for x in re.findall(r"'loss': '?(-?[0-9.]+(?:e[-+]?[0-9]+)?|nan|inf)", log)]
    if not losses:
        return {"losses": None, "loss_finite": None, "loss_falling": None}
    finite = bool(losses) and all(math.isfinite(x) for x in losses)
    falling = None
    if finite and len(losses) >= 10:
        falling = sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    return {"losses": losses, "loss_finite": finite, "loss_falling": falling}


def _raise_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/bench")
    parser.add_argument("--phase", type=int, choices=(1, 2), default=1)
    parser.add_argument("--doc-tokens", type=int, default=3000, help="phase 2: approximate tokens per conversation")
    parser.add_argument("--backends", default="unsloth,hf")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=280, help="seconds per phase run")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--extra", default="", help="extra flags for the phase script, space separated")
    parser.add_argument("--total-timeout", type=int, default=None,
                        help="seconds for the whole script: each phase run gets at most what is left of it")
    parser.add_argument("--json", default=None, help="results file (default: OUT/bench_phase<N>_results.json)")
    parser.add_argument("--layers", type=int, default=None, help="the real per-layer shape, fewer layers")
    parser.add_argument("--repeat", action="store_true", help="every row the same text (the loss must fall)")
    parser.add_argument("--cleanup", action="store_true",
                        help="delete --workdir at the end (the model copy and checkpoints: the GPU disk is 64 GB)")
    args = parser.parse_args()
    # A caller's `timeout` sends SIGTERM: end through the exception path, so the running phase is killed
    # (subprocess.run kills its child on any exception) and --cleanup still deletes the workdir.
    signal.signal(signal.SIGTERM, _raise_on_signal)

    t_start = time.perf_counter()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, data_dir = work / "gpt-oss-20b-random", work / f"data_phase{args.phase}"
    if not (model_dir / "config.json").is_file():
        build_random_model(model_dir, REPO / "configs" / "gpt-oss-20b", args.layers)
    if not data_dir.is_dir():
        if args.phase == 1:
            make_dataset(data_dir, rows=args.steps * args.batch + 8, words_per_row=int(args.seq * 1.3),
                         repeat=args.repeat)
        else:
            docs_per_row = max(1, args.seq // args.doc_tokens)
            make_dataset(data_dir, rows=(args.steps * args.batch + 2) * docs_per_row,
                         words_per_row=int(args.doc_tokens * 0.9), repeat=args.repeat)
    results = []
    try:
        for backend in args.backends.split(","):
            timeout = args.timeout
            if args.total_timeout:
                timeout = max(10, min(timeout, int(args.total_timeout - (time.perf_counter() - t_start))))
            res = run_phase(args.phase, backend, model_dir, data_dir, work / f"run_phase{args.phase}_{backend}",
                            args.steps, args.seq, args.batch, args.extra.split(), timeout)
            res.update(layers=args.layers or 24, repeat=args.repeat, seq=args.seq, doc_tokens=args.doc_tokens)
            if args.cleanup:
                res["log_tail"] = Path(res.pop("log")).read_text()[-4000:]
            results.append(res)
            Path(args.json or Path(args.out, f"bench_phase{args.phase}_results.json")).write_text(
                json.dumps(results, indent=2))
    finally:
        if args.cleanup:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    print(f"{'backend':8} {'rc':>3} {'trainable':>14} {'tok/s':>9} {'peak GB':>8} {'1st step s':>10} {'wall s':>7}")
    for r in results:
        m = r.get("metrics", {})
        t = m.get("throughput", {})
        print(f"{r['backend']:8} {r['returncode']:>3} {m.get('trainable_params', '-')!s:>14} "
              f"{t.get('tokens_per_second_median', '-')!s:>9} {t.get('peak_memory_gb', '-')!s:>8} "
              f"{t.get('first_step_seconds', '-')!s:>10} {r['wall_seconds']:>7}")


if __name__ == "__main__":
    main()
