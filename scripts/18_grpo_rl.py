#!/usr/bin/env python3
"""Phase 4: GRPO of the coding-agent LoRA policy with execution rewards (TRL GRPOTrainer).

    python3 scripts/18_grpo_rl.py --checkpoint checkpoints/agent_sft_ipo/final \\
        --per_device_train_batch_size 1 --gradient_accumulation_steps 16 --max_steps -1 \\
        --task_source data/rust/grpo/tasks.jsonl --output_dir checkpoints/agent_sft_grpo --language rust
    python3 scripts/18_grpo_rl.py --config configs/grpo.yaml --language rust

configs/grpo.yaml is loaded even without --config (pass --config FILE for another YAML); CLI flags win over it.
num_generations, max_completion_length, the developer prompt and the reward weights live there (any GRPOConfig
field is also a flag).

The adapter given by --checkpoint (IPO's or agent SFT's final/) is loaded on its base (--base_model, default the
adapter's base_model_name_or_path: the merged model) and keeps training. Prompts: each task of --task_source
(default data/<language>/grpo/tasks.jsonl; the held-out split is refused) rendered in Harmony up to
<|start|>assistant: developer prompt + tools, the agent's read_file of the buggy file, its run_tests with the
failure excerpt. Before the model loads, the reference fixes of the first tasks are scored through the same
reward path (a broken sandbox or missing toolchain stops the run there). Each completion is scored by
pipeline_lib.rewards in --reward_workers processes: the fix it proposes (apply_patch diff or whole file) is applied
to a fresh copy of the task and the tests run in pipeline_lib.sandbox. Writes <output_dir>/checkpoint-N/ and
<output_dir>/final/ (adapter, tokenizer, trainer_state.json, provenance.json, phase_metrics.json with
reward_accuracy for the SOFT gate > 0.55).
Exits non-zero if the run had a learning signal but the adapter did not change, a base weight changed, or a
resume trained nothing.

Deviations from GRPO as published (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300), all TRL 1.15 defaults:
- no KL term (beta 0): no reference model or adapter copy is kept;
- loss_type "dapo": token losses averaged over the whole batch's tokens, not per sequence first (DAPO, arXiv
  2503.14476), which removes the per-sequence length bias;
- one policy update per generation batch (num_iterations 1), so the clipped ratio is 1 and the loss is the plain
  policy gradient with group-normalised advantages.
"""

import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.interpreter import require_modules  # noqa: E402

require_modules()  # before any import that needs them: names this interpreter and the fix

from pipeline_lib import grpo, phases
from pipeline_lib.checkpoints import resolve_resume_checkpoint, train_to_max_steps
from pipeline_lib.config import parse_args_with_default_config
from pipeline_lib.fingerprint import record_fingerprint, require_saved_adapter
from pipeline_lib.ipo import load_adapter_policy, resolve_base_model
from pipeline_lib.live import add_live_metrics, configure_reporting
from pipeline_lib.metrics import write_phase_metrics
from pipeline_lib.modeling import Precision, detect_precision
from pipeline_lib.provenance import write_provenance

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "grpo.yaml"


def parse_args(argv: list[str] | None = None, precision: Precision | None = None):
    """Dataclass < this machine's precision (bf16 on CUDA, fp32 + use_cpu on CPU; gradient checkpointing on CUDA
    only) < configs/grpo.yaml (or --config FILE) < CLI."""
    precision = precision or detect_precision()
    machine = {**precision.trainer_kwargs(), "gradient_checkpointing": precision.device == "cuda"}
    return parse_args_with_default_config((grpo.GRPOScriptArguments, grpo.GRPOPhaseConfig), DEFAULT_CONFIG, argv,
                                          defaults=machine, description=__doc__)


def main(argv: list[str] | None = None) -> dict:
    from pipeline_lib.rewards import ExecutionReward
    from pipeline_lib.unsloth_utils import snapshot_parameters, verify_lora_updates

    precision = detect_precision()
    try:
        script_args, args = parse_args(argv, precision)
    except (ValueError, FileNotFoundError) as err:  # a bad flag, value or path: one line, no traceback
        raise SystemExit(f"18_grpo_rl.py: {err}") from None
    tasks = grpo.load_train_tasks(script_args.task_source, script_args.language, script_args.max_tasks)
    train_dataset = grpo.prompt_dataset(tasks, script_args.developer_prompt)
    base_model = resolve_base_model(script_args.checkpoint, script_args.base_model)
    resume = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
    weights = script_args.reward_weights()
    reward = ExecutionReward(tasks, weights=weights, workers=script_args.reward_workers)
    capped = (f" (capped from {args.num_generations_requested}: {args.generation_batch_size} completions per step)"
              if args.num_generations_requested else "")
    print(f"GRPO: {len(tasks)} {script_args.language} tasks from {script_args.task_source}, policy = "
          f"{script_args.checkpoint} on {base_model}, {args.num_generations} generations per task{capped}, "
          f"max {args.max_completion_length} new tokens, {args.generation_batch_size} completions per step, "
          f"reward weights {weights.terms()} scored in {script_args.reward_workers} processes, sandbox "
          f"{reward.isolation_report.get('mode')}, {precision.device}/{precision.torch_dtype_name}"
          + (f", resuming from {resume}" if resume else ""), flush=True)
    preflight = grpo.preflight_rewards(reward, tasks, count=max(1, script_args.reward_workers))
    print(f"reward preflight: the reference fixes of {len(preflight)} task(s) pass in the sandbox, rewards "
          f"{preflight}", flush=True)

    tokenizer = grpo.load_tokenizer(script_args.checkpoint, base_model)
    policy = load_adapter_policy(script_args.checkpoint, base_model, precision)
    configure_reporting(phases.GRPO.name, args.report_to, args.output_dir)
    trainer = grpo.build_grpo_trainer(policy, tokenizer, train_dataset, args, [reward])
    add_live_metrics(trainer, phases.GRPO.name)
    before = snapshot_parameters(trainer.model)
    try:
        train_to_max_steps(trainer, resume)  # a checkpoint already at max_steps trains no extra step
    finally:
        reward.close()
    lora_check = verify_lora_updates(before, trainer.model,
                                     require_experts=any("experts" in name for name in before.lora))

    final_dir = Path(args.output_dir) / "final"
    # Several processes (accelerate launch, --gpus N): every rank computes, rank 0 alone writes (as in sft.py); a
    # rank that raises stops the others (the launcher ends them).
    writer = trainer.is_world_process_zero()
    trainer.save_model(str(final_dir))  # rank 0 only (TrainingArguments.should_save)
    if writer:
        require_saved_adapter(final_dir, trainer.model, "GRPO")
        tokenizer.save_pretrained(str(final_dir))
        trainer.state.save_to_json(str(final_dir / "trainer_state.json"))
    # What this process's adapter gives on the fixed probes: the export re-checks it through plain PEFT.
    if writer or trainer.is_fsdp_enabled:  # FSDP2: its forward all-gathers layers, so every rank runs it
        record_fingerprint(trainer.model, final_dir, write=writer, backend="hf", phase=phases.GRPO.name)
    metrics = grpo.grpo_phase_metrics(
        trainer.state.log_history, global_step=trainer.state.global_step, max_steps=trainer.state.max_steps,
        lora_check=lora_check, resumed_from=resume, entropy_coef=args.entropy_coef, beta=args.beta,
        language=script_args.language, tasks=len(tasks), task_source=script_args.task_source,
        task_source_sha256=grpo.file_sha256(script_args.task_source), num_generations=args.num_generations,
        max_completion_length=args.max_completion_length, reward_weights=weights.terms(),
        base_model=base_model, policy_adapter=script_args.checkpoint, sandbox=reward.isolation_report,
    )
    metrics["world_size"] = args.world_size
    if writer:
        write_provenance(final_dir, {"script": asdict(script_args), "training": args.to_dict()}, metrics=metrics)
        write_phase_metrics(final_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    for warning in grpo.check_grpo_outcome(metrics):
        print(f"GRPO WARNING: {warning}", flush=True)
    print(grpo.summary_line(metrics, args.output_dir), flush=True)
    return metrics


if __name__ == "__main__":
    main()
