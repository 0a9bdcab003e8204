"""Phase 3: IPO on top of the agent-SFT LoRA policy, through TRL's DPOTrainer (``loss_type=["ipo"]``).

What this module adds to TRL, and why:
- The reference is the agent-SFT policy, checked. With a PeftModel that already carries the SFT adapter, TRL 1.15 +
  PEFT >= 0.20 copies that adapter as "ref" and scores the reference through it; older PEFT (and a fresh adapter)
  make TRL fall back to the adapter-disabled base. ``check_reference_at_step0``
  measures policy vs reference log-probs on the first batch, so neither case can pass silently.
- Reference log-probs are precomputed once (``precompute_ref_log_probs``), then the "ref" adapter is deleted: no
  second model or adapter stays in memory (r128 on gpt-oss-20b: 1.48B fp32 params, 5.9 GB) and checkpoints hold the
  trained adapter only.
- Not here: the CPU LM head. TRL 1.15 computes every DPO log-prob through a Triton kernel that the CPU torch build
  lacks; ``build_ipo_trainer`` installs pipeline_lib/trl_cpu.py's torch version (shared with SFT) in that slot.
- The preference contract: ``pref_prompt`` ends with ``<|start|>assistant`` and each completion is the Harmony
  assistant turn that follows it, ending with ``<|return|>``. The rows are plain text, so TRL applies no chat
  template; it appends ``tokenizer.eos_token`` (``<|return|>``) to any completion not already ending with it, which
  would corrupt a ``<|call|>`` turn, so such rows are rejected up front.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import DPOConfig

from pipeline_lib import phases
from pipeline_lib.modeling import FLEX_BLOCK_TOKENS, Precision, is_local_model, load_causal_lm
from pipeline_lib.probes import eager_attention
from pipeline_lib.trl_cpu import install_cpu_logprob_head

PREFERENCE_COLUMNS = {"pref_prompt": "prompt", "pref_chosen": "chosen", "pref_rejected": "rejected"}
PROMPT_END = "<|start|>assistant"
COMPLETION_START = "<|channel|>"
COMPLETION_END = "<|return|>"  # = the tokenizer's eos_token, so TRL's add_eos leaves these rows alone
REFERENCE_ADAPTER = "ref"  # the name TRL gives its copy of the policy adapter
# Summed completion log-probs (hundreds of tokens) of the same weights through the same batch agree to ~1e-6 in fp32
# on CPU; a reference that is the base model instead differs by whole nats.
PHASE = phases.IPO.name
IPO_LOSS = "ipo"  # TRL DPOConfig.loss_type value (TRL's name, not the phase's)
REFERENCE_ATOL = 1e-4
REFERENCE_RTOL = 1e-5  # bf16 sums over thousands of tokens on GPU


@dataclass
class IPOScriptArguments:
    checkpoint: str = field(default=phases.default_final(phases.AGENT_SFT), metadata={
        "help": "Agent-SFT LoRA adapter folder (adapter_config.json): the trainable "
                "policy and the IPO reference."})
    train_data_path: str = field(default=phases.default_train_data(phases.IPO),
                                 metadata={"help": "datasets.save_to_disk folder with pref_prompt/pref_chosen/"
                                                   "pref_rejected columns (Harmony text)."})
    base_model: str | None = field(default=None,
                                   metadata={"help": "Base model the adapter sits on; defaults to the adapter's "
                                                     "base_model_name_or_path (the merged model of Phase 1.5)."})
    backend: str = field(default="hf", metadata={
        "help": "hf: stock PEFT expert LoRA; fast: pipeline_lib/fast_path.py computes it (same adapter format)."})
    strict_reference: bool = field(default=True,
                                   metadata={"help": "Stop before training when the step-0 reference log-probs differ "
                                                     "from the SFT policy's."})

    def __post_init__(self) -> None:
        if self.backend not in ("hf", "fast"):
            raise ValueError(f"--backend must be hf or fast for IPO, got {self.backend!r}")
        adapter_config(self.checkpoint)  # fails here, before any model is loaded
        if not Path(self.train_data_path).is_dir():
            raise FileNotFoundError(f"--train_data_path {self.train_data_path}: no such folder (run data prep first)")


@dataclass
class IPOConfig(DPOConfig):
    """DPOConfig with this phase's defaults; configs/ipo.yaml and the CLI override them."""

    output_dir: str = field(default=phases.default_run_dir(phases.IPO),
                            metadata={"help": "Where checkpoints and final/ go."})
    loss_type: list[str] = field(default_factory=lambda: [IPO_LOSS], metadata={"help": "Must stay ['ipo']."})
    beta: float = field(default=0.1, metadata={"help": "IPO's tau: the target log-ratio margin is 1/(2*beta)."})
    precompute_ref_log_probs: bool = field(default=True, metadata={"help": "Score the reference once, up front."})
    # gpt-oss's config declares 0.9, and TRL adds coef * load-balancing loss whenever the config has the attribute:
    # on the tiny model that is +1.8 on a loss of 25. The router is not a LoRA target; the loss here is IPO's alone.
    router_aux_loss_coef: float | None = field(default=0.0, metadata={"help": "MoE load-balancing loss weight."})
    # TRL's 1e-6 is for full fine-tuning; LoRA deltas need a larger step.
    learning_rate: float = field(default=5e-6, metadata={"help": "AdamW learning rate."})
    logging_steps: float = field(default=1, metadata={"help": "Log every step: loss_step0 is the first logged loss."})
    max_length: int | None = field(default=8192, metadata={"help": "Prompt+completion tokens (balanced profile)."})
    # Rows padded to flex attention's block (modeling.FLEX_BLOCK_TOKENS: shorter rows failed the first IPO step on
    # the H200, docs/BENCHMARKS.md "Smoke runs I–K"). On every device, unlike SFT's flex-only padding
    # (sft.build_sft_trainer): the step-0 reference check compares batches, and CPU tests should see the GPU's.
    pad_to_multiple_of: int | None = field(default=FLEX_BLOCK_TOKENS,
                                           metadata={"help": "Pad rows to a multiple of this."})
    save_steps: float = field(default=25, metadata={"help": "Checkpoint every N steps (resume points)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_type != [IPO_LOSS]:
            raise ValueError(f"--loss_type must be ['ipo'] for this phase, got {self.loss_type}")
        if not self.beta > 0:
            raise ValueError(f"--beta must be > 0 (IPO's tau), got {self.beta}")


def ipo_step0_loss(beta: float) -> float:
    """TRL's IPO loss when policy == reference: every log-ratio is 0, so the loss is (0 - 1/(2*beta))**2."""
    return (1.0 / (2.0 * beta)) ** 2


def adapter_config(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {adapter_dir}: no adapter_config.json (expected a LoRA adapter folder "
                                f"such as {phases.default_final(phases.AGENT_SFT)})")
    return json.loads(path.read_text())


def resolve_base_model(adapter_dir: str | os.PathLike, base_model: str | None = None) -> str:
    """``base_model`` if given, else the adapter's base_model_name_or_path; a local-looking path must exist."""
    name = base_model or adapter_config(adapter_dir).get("base_model_name_or_path")
    source = "--base_model" if base_model else f"{adapter_dir}/adapter_config.json base_model_name_or_path"
    if not name:
        raise ValueError(f"{source} is empty: pass --base_model")
    hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if not is_local_model(name) and (not hub_id or os.environ.get("HF_HUB_OFFLINE") == "1"):
        raise FileNotFoundError(f"{source} = {name}: no such model folder (pass --base_model)")
    return name


def load_adapter_policy(adapter_dir: str | os.PathLike, base_model: str | None = None,
                        precision: Precision | None = None, is_trainable: bool = True):
    """Base model + a saved LoRA adapter as a PeftModel whose adapter ("default") keeps training (IPO, GRPO)."""
    from peft import PeftModel

    base = load_causal_lm(resolve_base_model(adapter_dir, base_model), precision)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=is_trainable)


def load_preference_dataset(path: str | os.PathLike):
    """The preference split with pref_* renamed to DPOTrainer's prompt/chosen/rejected, every row checked."""
    from datasets import Dataset, load_from_disk

    dataset = load_from_disk(str(path))
    if not isinstance(dataset, Dataset):
        raise ValueError(f"--train_data_path {path}: expected one split saved with save_to_disk, got {type(dataset)}")
    missing = [c for c in PREFERENCE_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"--train_data_path {path}: missing column(s) {missing}; has {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError(f"--train_data_path {path}: no rows")
    dataset = dataset.select_columns(list(PREFERENCE_COLUMNS)).rename_columns(PREFERENCE_COLUMNS)
    for i, row in enumerate(zip(dataset["prompt"], dataset["chosen"], dataset["rejected"], strict=True)):
        problem = preference_row_problem(*row)
        if problem:
            raise ValueError(f"--train_data_path {path}: row {i}: {problem}")
    return dataset


def preference_row_problem(prompt: str, chosen: str, rejected: str) -> str | None:
    if not prompt.endswith(PROMPT_END):
        return f"pref_prompt must end with {PROMPT_END!r}, ends with {prompt[-40:]!r}"
    for name, text in (("pref_chosen", chosen), ("pref_rejected", rejected)):
        if not text.startswith(COMPLETION_START) or not text.endswith(COMPLETION_END):
            return (f"{name} must start with {COMPLETION_START!r} and end with {COMPLETION_END!r}: "
                    f"{text[:40]!r}...{text[-20:]!r}")
    if chosen == rejected:
        return "pref_chosen == pref_rejected"
    return None


def build_ipo_trainer(policy, tokenizer, train_dataset, args: IPOConfig, **kwargs):
    """DPOTrainer on the SFT policy; its reference log-probs are precomputed here (progress bar)."""
    from peft import PeftModel
    from trl import DPOTrainer

    if not isinstance(policy, PeftModel):
        raise TypeError("the IPO policy must be a PeftModel carrying the agent-SFT adapter (load_adapter_policy)")
    install_cpu_logprob_head()
    # DPOTrainer precomputes the reference log-probs in __init__, under no_grad. On CUDA the policy uses
    # flex_attention, and inductor's no-grad flex kernel for it failed on the H200 (NoValidChoicesError, smoke run
    # 2026-11-28, docs/BENCHMARKS.md) as it did for the merge's probes; the precompute runs eager (the same math,
    # sinks included), training keeps flex.
    with eager_attention(policy):
        return DPOTrainer(model=policy, args=args, train_dataset=train_dataset, processing_class=tokenizer, **kwargs)


def completion_logps(model, batch: dict[str, Any], autocast=None):
    """Summed completion log-probs (chosen, rejected) of ``model`` as it is now, exactly as TRL sums them
    (``autocast``: the trainer's ``accelerator.autocast()``, as TRL's reference pass uses)."""
    import contextlib

    import torch

    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad(), autocast or contextlib.nullcontext():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                    fused_lm_head=True, use_cache=False)
    per_token = out.log_probs[:, -(batch["completion_mask"].size(1) - 1):]
    return per_token.sum(dim=1).chunk(2, dim=0)


def first_batch(trainer) -> dict[str, Any]:
    """The first precompute batch (same rows, same padding), on the trainer's device."""
    args = trainer.args
    size = min(args.precompute_ref_batch_size or args.per_device_train_batch_size, len(trainer.train_dataset))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(size)])
    return {k: v.to(trainer.accelerator.device) for k, v in batch.items()}


@dataclass(frozen=True)
class ReferenceCheck:
    equal: bool
    max_abs_diff: float
    pairs: int


def check_reference_at_step0(trainer, atol: float = REFERENCE_ATOL) -> ReferenceCheck:
    """Precomputed reference log-probs vs the policy's own (adapter "default" enabled) on the first batch."""
    import torch

    batch = first_batch(trainer)
    if "ref_chosen_logps" not in batch:
        raise ValueError("reference log-probs were not precomputed (precompute_ref_log_probs is off)")
    model = trainer.accelerator.unwrap_model(trainer.model)
    # Under the attention the reference was precomputed with (build_ipo_trainer: eager): the question is
    # whether the cached numbers are the SFT policy's (adapter on, same weights), not whether eager and flex
    # attention round alike. H200, 2-layer random model, bf16: flex policy vs eager reference differed by 2.01 in
    # a summed completion log-prob (2026-11-28 smoke run), far above this check's tolerance.
    with eager_attention(model):
        policy = torch.cat(completion_logps(model, batch, trainer.accelerator.autocast()))
    ref = torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]]).to(policy)
    diff = (policy - ref).abs()
    equal = bool((diff <= atol + REFERENCE_RTOL * ref.abs()).all())
    return ReferenceCheck(equal=equal, max_abs_diff=float(diff.max()), pairs=len(policy) // 2)


def drop_reference_adapter(model) -> bool:
    """Delete TRL's "ref" adapter copy once its log-probs are cached; True if there was one."""
    if REFERENCE_ADAPTER not in model.peft_config:
        return False
    model.delete_adapter(REFERENCE_ADAPTER)
    return True


def _mean_last(history: list[dict[str, Any]], key: str, n: int = 10) -> float | None:
    values = [e[key] for e in history if isinstance(e.get(key), int | float) and math.isfinite(e[key])]
    return sum(values[-n:]) / len(values[-n:]) if values else None


def ipo_phase_metrics(log_history: list[dict[str, Any]], *, check: ReferenceCheck, beta: float, global_step: int,
                      **extra: Any) -> dict[str, Any]:
    """phase_metrics.json for the orchestrator (SOFT gate: logged only)."""
    losses = [e["loss"] for e in log_history if isinstance(e.get("loss"), int | float)]
    return {
        "phase": PHASE,
        "loss": _mean_last(log_history, "loss"),
        "loss_step0": losses[0] if losses else None,
        "loss_step0_closed_form": ipo_step0_loss(beta),
        "reference": "sft_policy" if check.equal else "mismatch",
        "ref_equals_policy_at_step0": check.equal,
        "ref_max_abs_diff_step0": check.max_abs_diff,
        "rewards_margins": _mean_last(log_history, "rewards/margins"),
        "rewards_accuracies": _mean_last(log_history, "rewards/accuracies"),
        "global_step": global_step,
        "beta": beta,
        **extra,
    }
