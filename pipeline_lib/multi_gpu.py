"""Several GPUs: the data scripts/gpu_multi_gpu.sh trains on, and its report (DDP scaling, FSDP2 kill -9 + resume).

    python -m pipeline_lib.multi_gpu data --out DIR --rows 256 --words 900      # fixed-length Phase 1 rows
    python -m pipeline_lib.multi_gpu report --one RUN --two RUN --fsdp RUN --events FILE --out PREFIX

The data rows are Harmony conversations whose final answer is longer than the run's --max_seq_length, so every row
is truncated to exactly max_seq_length tokens: each step of the 1-GPU and the 2-GPU run trains the same number of
tokens, and tokens/s compares like with like (no padding, no packing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# The same system message as the tool-calling rows data prep writes (Harmony; pipeline_lib/harmony.py renders it).
SYSTEM = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
          "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
          "Channel must be included for every message.<|end|>")
SCALING_TARGET = 1.85  # issue 11: tok/s on 2 GPUs / 1 GPU, same run


def long_answer_text(i: int, words: int) -> str:
    """One conversation whose assistant answer has ``words`` words (~3 tokens each in o200k_harmony)."""
    answer = " ".join(f"w{i}x{j}" for j in range(words))
    return (f"{SYSTEM}<|start|>user<|message|>Write {words} words, round {i}.<|end|>"
            f"<|start|>assistant<|channel|>final<|message|>{answer}<|return|>")


def write_long_rows(out: Path, rows: int, words: int) -> Path:
    from datasets import Dataset

    if rows < 1 or words < 1:
        raise ValueError(f"--rows and --words must be >= 1, got {rows} and {words}")
    texts = [long_answer_text(i, words) for i in range(rows)]
    Dataset.from_dict({"text": texts, "source": ["multi_gpu_bench"] * rows}).save_to_disk(str(out))
    return out


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "final" / "phase_metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def scaling(one: dict[str, Any] | None, two: dict[str, Any] | None) -> dict[str, Any]:
    """tok/s of the 2-process run over the 1-process run (both the median over timed steps, global tokens)."""
    def rate(m: dict[str, Any] | None) -> float | None:
        return ((m or {}).get("throughput") or {}).get("tokens_per_second_median")

    r1, r2 = rate(one), rate(two)
    out: dict[str, Any] = {"tokens_per_second_1": r1, "tokens_per_second_2": r2, "target": SCALING_TARGET,
                           "world_size_2": (two or {}).get("world_size"),
                           "tokens_per_step_1": ((one or {}).get("throughput") or {}).get("tokens_per_step_median"),
                           "tokens_per_step_2": ((two or {}).get("throughput") or {}).get("tokens_per_step_median")}
    if r1 and r2:
        out["ratio"] = round(r2 / r1, 3)
        out["meets_target"] = out["ratio"] >= SCALING_TARGET
    else:
        out["ratio"] = None
        out["meets_target"] = None
        out["why_missing"] = "a run did not finish or logged no timed step"
    if out["tokens_per_step_1"] and out["tokens_per_step_2"] and out["tokens_per_step_1"] != out["tokens_per_step_2"]:
        out["warning"] = "the two runs trained different tokens per step: the ratio is not like for like"
    return out


def resume_result(metrics: dict[str, Any] | None, killed_after: str | None) -> dict[str, Any]:
    """Did the rerun resume from the checkpoint the killed run left and train to max_steps?"""
    if metrics is None:
        return {"passed": False, "why": "the rerun wrote no final/phase_metrics.json", "killed_after": killed_after}
    problems = []
    if not killed_after:
        problems.append("the first run was not killed after a checkpoint")
    resumed = metrics.get("resumed_from_step")
    if resumed is None:
        problems.append("the rerun did not resume from a checkpoint")
    elif resumed >= (metrics.get("max_steps") or 0):
        # the killed run kept going to the end (seen when only the launcher died): nothing was resumed mid-phase
        problems.append(f"resumed from step {resumed}, already max_steps: the kill did not stop the training")
    if metrics.get("global_step") != metrics.get("max_steps"):
        problems.append(f"global_step {metrics.get('global_step')} != max_steps {metrics.get('max_steps')}")
    if not (metrics.get("lora_update_check") or {}).get("passed"):
        problems.append("LoRA update check did not pass")
    return {"passed": not problems, "problems": problems, "killed_after": killed_after,
            "resumed_from_step": metrics.get("resumed_from_step"), "global_step": metrics.get("global_step"),
            "max_steps": metrics.get("max_steps"), "world_size": metrics.get("world_size"),
            "expert_lora_changed": (metrics.get("lora_update_check") or {}).get("expert_lora_changed"),
            "throughput": metrics.get("throughput")}


def report(*, one: Path, two: Path, fsdp: Path, events: Path, killed_after: str | None,
           environment: str, command: str) -> dict[str, Any]:
    steps = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] if events.is_file() else []
    return {"command": command, "environment": environment, "steps": steps,
            "ddp_scaling": scaling(read_metrics(one), read_metrics(two)),
            "fsdp2_kill_resume": resume_result(read_metrics(fsdp), killed_after)}


def markdown(rep: dict[str, Any]) -> str:
    s, r = rep["ddp_scaling"], rep["fsdp2_kill_resume"]
    verdict = "PASSED" if r["passed"] else "FAILED: " + "; ".join(r.get("problems") or [r.get("why", "")])
    lines = ["# Multi-GPU run (scripts/gpu_multi_gpu.sh)", "", f"- command: `{rep['command']}`",
             f"- environment: {rep['environment']}", "", "## DDP scaling of Phase 1 (same run, same global batch)", "",
             "| GPUs | tokens/s (median) | tokens/step |", "|---|---|---|",
             f"| 1 | {s['tokens_per_second_1']} | {s['tokens_per_step_1']} |",
             f"| {s.get('world_size_2') or 2} | {s['tokens_per_second_2']} | {s['tokens_per_step_2']} |", "",
             f"ratio {s['ratio']} (target >= {s['target']}: "
             f"{'met' if s['meets_target'] else 'NOT met' if s['meets_target'] is False else 'not measured'})"
             + (f"; {s['warning']}" if s.get("warning") else ""), "",
             "## FSDP2 Phase 1: kill -9 after the first checkpoint, rerun", "",
             f"- killed after: {r.get('killed_after')}", f"- resumed from step: {r.get('resumed_from_step')}",
             f"- finished: global_step {r.get('global_step')} of {r.get('max_steps')}, world size "
             f"{r.get('world_size')}, expert LoRA tensors changed {r.get('expert_lora_changed')}",
             f"- verdict: {verdict}",
             "", "## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {e['step']} | {e['status']} | {e['seconds']} | {e.get('note', '')} |" for e in rep["steps"]]
    return "\n".join(lines) + "\n"


def memory_plan(config: str | Path, *, gpus: int, lora_r: int, seq: int, batch: int = 1,
                sharded: bool = True) -> dict[str, float]:
    """GB per GPU by component for LoRA training of a GPT-OSS config (counted on a meta-device model).

    weights: bf16 base, divided by ``gpus`` under FSDP2 (``sharded``), whole under DDP; LoRA params, gradients
    (both fp32: PEFT keeps adapters in fp32) and AdamW's two fp32 moments, divided under FSDP2. activations:
    gradient checkpointing keeps each layer's bf16 input (layers x batch x seq x hidden x 2 bytes) plus the
    fp32 logits of the loss (batch x seq x vocab x 4) - not sharded (each GPU runs its own micro-batch); FSDP2
    adds two all-gathered bf16 layers (the one running and the one prefetched). An estimate for planning, not a
    measurement: kernels' workspaces and the allocator's fragmentation come on top.
    """
    from pipeline_lib.modeling import build_meta_model, load_config
    from pipeline_lib.unsloth_utils import count_lora_trainable

    cfg = load_config(config)
    model = build_meta_model(config)
    params = sum(p.numel() for p in model.parameters())
    lora = count_lora_trainable(config, lora_r)
    share = gpus if sharded else 1
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    gb = 1e9
    plan = {
        "weights": params * 2 / share / gb,
        "lora_params": lora * 4 / share / gb,
        "gradients": lora * 4 / share / gb,
        "optimizer": lora * 8 / share / gb,
        "activations": (cfg.num_hidden_layers * batch * seq * cfg.hidden_size * 2
                        + batch * seq * cfg.vocab_size * 4 + (2 * layer * 2 if sharded and gpus > 1 else 0)) / gb,
    }
    plan = {k: round(v, 1) for k, v in plan.items()}
    plan["total"] = round(sum(plan.values()), 1)
    plan["params"] = params
    plan["lora_trainable"] = lora
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--rows", type=int, required=True)
    d.add_argument("--words", type=int, required=True)
    r = sub.add_parser("report")
    for name in ("one", "two", "fsdp", "events", "out"):
        r.add_argument(f"--{name}", type=Path, required=True)
    r.add_argument("--killed-after", default="")
    r.add_argument("--environment", default="")
    r.add_argument("--command", default="")
    args = parser.parse_args(argv)
    if args.cmd == "data":
        write_long_rows(args.out, args.rows, args.words)
        print(f"{args.rows} rows of {args.words} answer words -> {args.out}")
        return 0
    rep = report(one=args.one, two=args.two, fsdp=args.fsdp, events=args.events,
                 killed_after=args.killed_after or None, environment=args.environment, command=args.command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(rep, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(rep))
    print(markdown(rep))
    passed = bool(rep["ddp_scaling"]["ratio"]) and rep["fsdp2_kill_resume"]["passed"]
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
