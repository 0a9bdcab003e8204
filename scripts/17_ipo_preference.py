#!/usr/bin/env python3
"""Phase 3: IPO preference optimisation of the agent-SFT LoRA policy (TRL DPOTrainer, loss_type=["ipo"]).

    python3 scripts/17_ipo_preference.py --checkpoint checkpoints/agent_sft/final \\
        --train_data_path data/coding_tui/preference/train --per_device_train_batch_size 2 \\
        --gradient_accumulation_steps 16 --output_dir checkpoints/agent_sft_ipo --beta 0.1 --max_length 8192

configs/ipo.yaml is loaded even without --config (pass --config FILE for another YAML); CLI flags win over it.

The agent-SFT adapter (on --base_model, default: the adapter's base_model_name_or_path) keeps training, and the
reference is that same SFT policy at step 0: its log-probs are precomputed once, checked against the policy's on
the first batch, and the reference copy is then dropped from memory. Writes <output_dir>/checkpoint-N/ and
<output_dir>/final/ (adapter, tokenizer, trainer_state.json, provenance.json, phase_metrics.json). The IPO gate is
SOFT: the loss is logged, never judged. Like phases 1 and 2, it then checks that every LoRA tensor (experts
included) changed and no base weight did, and fails loudly (after final/ is written) otherwise.

Deviations from the IPO paper (Azar et al. 2023, arXiv 2310.12036):
- ``--beta`` is the paper's tau: the loss is (h - 1/(2*tau))**2, so at step 0 (policy == reference) it is
  (1/(2*0.1))**2 = 25 for beta 0.1.
- TRL divides each completion's summed log-ratio by its token count before the difference h (length-normalised,
  as the IPO authors did in practice per TRL's code comment); the paper writes sequence-level log-probs.
- One pass over offline preference pairs (Anthropic hh-rlhf + CodeFeedback with truncated rejections), not the
  paper's online/sampled pairs; the MoE router load-balancing loss that TRL would add is switched off.
"""

import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.interpreter import require_modules  # noqa: E402

require_modules()  # before any import that needs them: names this interpreter and the fix

from pipeline_lib import ipo
from pipeline_lib.checkpoints import resolve_resume_checkpoint, train_to_max_steps
from pipeline_lib.config import default_config, parse_args_with_default_config
from pipeline_lib.fingerprint import (
    describe,
    record_fingerprint,
    require_saved_adapter,
    verify_fingerprint,
)
from pipeline_lib.live import add_live_metrics, configure_reporting
from pipeline_lib.metrics import write_phase_metrics
from pipeline_lib.modeling import Precision, detect_precision
from pipeline_lib.provenance import write_provenance
from pipeline_lib.throughput import ThroughputCallback
from pipeline_lib.tokenizer import load_gpt_oss_tokenizer
from pipeline_lib.unsloth_utils import LoraUpdateError, snapshot_parameters, training_path, verify_lora_updates

PHASE = ipo.PHASE
DEFAULT_CONFIG = default_config(PHASE)


def load_tokenizer(adapter_dir: str, base_model: str):
    """The tokenizer saved beside the adapter, else the base model's, else the offline-built gpt-oss one."""
    for folder in (adapter_dir, base_model):
        if (Path(folder) / "tokenizer.json").is_file():
            return load_gpt_oss_tokenizer(folder)
    return load_gpt_oss_tokenizer()


def parse_args(argv: list[str] | None = None, precision: Precision | None = None):
    """Dataclass < this machine's precision (bf16 on CUDA, fp32 + use_cpu on CPU; gradient checkpointing on CUDA
    only, as in the SFT phases) < configs/ipo.yaml (or --config FILE) < CLI."""
    precision = precision or detect_precision()
    machine = {**precision.trainer_kwargs(), "gradient_checkpointing": precision.device == "cuda"}
    return parse_args_with_default_config((ipo.IPOScriptArguments, ipo.IPOConfig), DEFAULT_CONFIG, argv,
                                          defaults=machine)


def main(argv: list[str] | None = None) -> dict:
    precision = detect_precision()
    script_args, args = parse_args(argv, precision)

    train_dataset = ipo.load_preference_dataset(script_args.train_data_path)
    base_model = ipo.resolve_base_model(script_args.checkpoint, script_args.base_model)
    # None -> fresh run, 'auto' -> newest checkpoint-N with trainer_state.json, a path -> that checkpoint
    resume = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
    print(f"IPO: {len(train_dataset)} pairs, policy = reference = {script_args.checkpoint} on {base_model}, "
          f"beta {args.beta}, {precision.device}/{precision.torch_dtype_name}"
          + (f", resuming from {resume}" if resume else ""))

    tokenizer = load_tokenizer(script_args.checkpoint, base_model)
    policy = ipo.load_adapter_policy(script_args.checkpoint, base_model, precision)
    # The agent-SFT adapter must mean to PEFT what it meant to the process that trained it (raises otherwise).
    fingerprint = verify_fingerprint(policy, script_args.checkpoint)
    print(f"adapter fingerprint: {describe(fingerprint)}")
    if script_args.backend == "fast":
        from pipeline_lib.fast_path import enable_fast_experts

        enable_fast_experts(policy)
    path = training_path(policy, script_args.backend)
    print(f"IPO training path: {path}")
    configure_reporting(PHASE, args.report_to, args.output_dir)
    throughput = ThroughputCallback()  # first-step time (compilation) and peak memory, as in the SFT phases
    trainer = ipo.build_ipo_trainer(policy, tokenizer, train_dataset, args, callbacks=[throughput])
    add_live_metrics(trainer, PHASE)

    check = ipo.check_reference_at_step0(trainer)
    print(f"step-0 reference check: max |ref - policy| = {check.max_abs_diff:.3g} over {check.pairs} pairs "
          f"-> {'SFT policy' if check.equal else 'MISMATCH'}")
    if not check.equal and script_args.strict_reference:
        raise SystemExit("the reference log-probs are not the SFT policy's; "
                         "pass --strict_reference false to train anyway")
    ipo.drop_reference_adapter(trainer.model)

    before = snapshot_parameters(trainer.model)
    train_to_max_steps(trainer, resume)
    lora_config = trainer.model.peft_config["default"]
    lora_check = verify_lora_updates(before, trainer.model,
                                     require_experts=bool(getattr(lora_config, "target_parameters", None)))

    final_dir = Path(args.output_dir) / "final"
    # Several processes (accelerate launch, --gpus N): every rank computes, rank 0 alone writes (as in sft.py); a
    # rank that raises stops the others (the launcher ends them).
    writer = trainer.is_world_process_zero()
    trainer.save_model(str(final_dir))  # rank 0 only (TrainingArguments.should_save)
    if writer:
        require_saved_adapter(final_dir, trainer.model, "IPO")
        tokenizer.save_pretrained(str(final_dir))
        trainer.state.save_to_json(str(final_dir / "trainer_state.json"))
    if writer or trainer.is_fsdp_enabled:  # FSDP2: its forward all-gathers layers, so every rank runs it
        record_fingerprint(trainer.model, final_dir, write=writer, backend=script_args.backend, phase=PHASE)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    metrics = ipo.ipo_phase_metrics(
        trainer.state.log_history, check=check, beta=args.beta, global_step=trainer.state.global_step,
        trainable_params=trainable, lora_r=lora_config.r, base_model=base_model, sft_adapter=script_args.checkpoint,
        pairs=len(trainer.train_dataset), backend=script_args.backend, training_path=path,
        lora_update_check=lora_check, sft_adapter_fingerprint=fingerprint, throughput=throughput.summary(),
    )
    metrics["world_size"] = args.world_size
    if writer:
        write_provenance(final_dir, {"script": asdict(script_args), "training": args.to_dict()}, metrics=metrics)
        write_phase_metrics(final_dir, metrics)
    trainer.accelerator.wait_for_everyone()
    if not lora_check["passed"]:
        raise LoraUpdateError("ipo finished but is not trustworthy: LoRA update check: "
                              + "; ".join(lora_check["problems"]))
    print(f"IPO done: {metrics['global_step']} steps, loss {metrics['loss_step0']:.4g} -> {metrics['loss']:.4g} "
          f"(avg last 10), reference = {metrics['reference']}, expert_lora_changed="
          f"{lora_check['expert_lora_changed']}, adapter -> {final_dir}")
    return metrics


if __name__ == "__main__":
    main()
