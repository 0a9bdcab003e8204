"""Several GPUs: the data scripts/gpu_multi_gpu.sh trains on, its report (DDP scaling, FSDP2 kill -9 + resume), and
the per-GPU memory plan (README, "GPT-OSS-120B").

    python -m pipeline_lib.multi_gpu data --out DIR --rows 256 --words 900      # fixed-length Phase 1 rows
    python -m pipeline_lib.multi_gpu report --one RUN --two RUN --fsdp RUN --events FILE --out PREFIX
    python -m pipeline_lib.multi_gpu plan --config configs/gpt-oss-120b --lora_r 64 --seq 8192   # GB per GPU

The data rows are Harmony conversations whose final answer is longer than the run's --max_seq_length, so every row
is truncated to exactly max_seq_length tokens: each step of the 1-GPU and the 2-GPU run trains the same number of
tokens, and tokens/s compares like with like (no padding, no packing).
"""

from __future__ import annotations

import argparse
import functools
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


@functools.cache
def parameter_counts(config: str, lora_r: int) -> tuple[int, int, int]:
    """(all parameters, one decoder layer's, LoRA-trainable at r) of a GPT-OSS config, counted on a meta-device model
    with ONE decoder layer: every layer has the same shapes (sliding and full attention differ only in the mask),
    and PEFT wrapping all 36 layers x 128 experts of 120B on the meta device takes 73 s, one layer 3 s."""
    from pipeline_lib.modeling import build_meta_model, load_config
    from pipeline_lib.unsloth_utils import count_lora_trainable

    cfg = load_config(config)
    layers = cfg.num_hidden_layers
    fields = {k: v for k, v in cfg.to_dict().items() if k != "quantization_config"}
    fields.update(num_hidden_layers=1, layer_types=fields["layer_types"][:1])
    one = type(cfg).from_dict(fields)
    model = build_meta_model(one)
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    params = sum(p.numel() for p in model.parameters()) + (layers - 1) * layer
    return params, layer, count_lora_trainable(one, lora_r) * layers


def memory_plan(config: str | Path, *, gpus: int, lora_r: int, seq: int, batch: int = 1,
                sharded: bool = True) -> dict[str, int]:
    """Bytes per GPU by component for LoRA training of a GPT-OSS config (parameters counted on a meta-device model).

    weights: the bf16 base (2 bytes a parameter), divided by ``gpus`` under FSDP2 (``sharded``), whole under DDP.
    lora_params, gradients: 4 bytes a LoRA parameter each (PEFT keeps adapters in fp32); optimizer: AdamW's two fp32
    moments (8 bytes); all three divided under FSDP2. activations (per GPU, each runs its own micro-batch of
    ``batch`` rows of ``seq`` tokens): gradient checkpointing keeps each layer's bf16 input (layers x batch x seq x
    hidden x 2) plus the fp32 logits of the loss (batch x seq x vocab x 4); FSDP2 adds two all-gathered bf16 layers
    (the one running and the one prefetched). Computed for planning, not measured: the recomputed layer's own
    activations, kernel workspaces, the bf16 logits before the fp32 cast and the allocator's fragmentation come on
    top. One check against a measurement: the 20B shape, r64, seq 4096, 1 GPU gives 57.5 GB here; the H100 run's
    peak was 57.07 GB on the hf backend (README, docs/BENCHMARKS.md) - one point, so the terms left out may be
    offsetting ones counted high (fp32 logits), not absent.
    """
    from pipeline_lib.modeling import load_config

    if gpus < 1 or lora_r < 1 or seq < 1 or batch < 1:
        raise ValueError(f"gpus, lora_r, seq and batch must be >= 1, got {gpus}, {lora_r}, {seq}, {batch}")
    cfg = load_config(config)
    params, layer, lora = parameter_counts(str(config), lora_r)
    share = gpus if sharded else 1
    plan = {
        "weights": params * 2 // share,
        "lora_params": lora * 4 // share,
        "gradients": lora * 4 // share,
        "optimizer": lora * 8 // share,
        "activations": (cfg.num_hidden_layers * batch * seq * cfg.hidden_size * 2 + batch * seq * cfg.vocab_size * 4
                        + (2 * layer * 2 if sharded and gpus > 1 else 0)),
    }
    plan["total"] = sum(plan.values())
    plan["params"] = params
    plan["lora_trainable"] = lora
    return plan


COMPONENTS = ("weights", "lora_params", "gradients", "optimizer", "activations", "total")


def plan_table(config: str | Path, *, lora_r: int, seq: int, batch: int = 1,
               gpu_counts: tuple[int, ...] = (1, 2, 4, 8)) -> str:
    """Markdown: GB per GPU (1e9 bytes) by component, DDP on 1 GPU and FSDP2 on more (the README's 120B plan)."""
    rows = ["| GPUs | " + " | ".join(COMPONENTS) + " |", "|---" * (len(COMPONENTS) + 1) + "|"]
    for n in gpu_counts:
        plan = memory_plan(config, gpus=n, lora_r=lora_r, seq=seq, batch=batch, sharded=n > 1)
        rows.append(f"| {n}{' (FSDP2)' if n > 1 else ''} | "
                    + " | ".join(f"{plan[c] / 1e9:.1f}" for c in COMPONENTS) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--rows", type=int, required=True)
    d.add_argument("--words", type=int, required=True)
    p = sub.add_parser("plan", help="GB per GPU by component for 1/2/4/8 GPUs (memory_plan)")
    p.add_argument("--config", type=Path, required=True, help="a folder with config.json (configs/gpt-oss-120b)")
    p.add_argument("--lora_r", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--batch", type=int, default=1, help="rows per GPU micro-batch (IPO: 2, chosen + rejected)")
    r = sub.add_parser("report")
    for name in ("one", "two", "fsdp", "events", "out"):
        r.add_argument(f"--{name}", type=Path, required=True)
    r.add_argument("--killed-after", default="")
    r.add_argument("--environment", default="")
    r.add_argument("--command", default="")
    r.add_argument("--fsdp-only", action="store_true",
                   help="the DDP scaling runs were skipped on purpose: the verdict is the FSDP2 resume's alone")
    args = parser.parse_args(argv)
    if args.cmd == "data":
        write_long_rows(args.out, args.rows, args.words)
        print(f"{args.rows} rows of {args.words} answer words -> {args.out}")
        return 0
    if args.cmd == "plan":
        print(plan_table(args.config, lora_r=args.lora_r, seq=args.seq, batch=args.batch), end="")
        return 0
    rep = report(one=args.one, two=args.two, fsdp=args.fsdp, events=args.events,
                 killed_after=args.killed_after or None, environment=args.environment, command=args.command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(rep, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(rep))
    print(markdown(rep))
    return 0 if report_passed(rep, fsdp_only=args.fsdp_only) else 1


def report_passed(rep: dict[str, Any], *, fsdp_only: bool = False) -> bool:
    """Both scaling runs gave a ratio (unless --fsdp-only skipped them) and the FSDP2 kill -9 + resume passed."""
    return (fsdp_only or bool(rep["ddp_scaling"]["ratio"])) and bool(rep["fsdp2_kill_resume"]["passed"])


if __name__ == "__main__":
    raise SystemExit(main())
