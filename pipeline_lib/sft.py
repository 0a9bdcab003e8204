"""Supervised fine-tuning on Harmony conversations: data, trainer, final save.

Used by scripts/13_train_lang_adapter.py (Phase 1, tool calling, LoRA r64) and scripts/14_train_core_agent.py
(Phase 2, agent trajectories, LoRA r128, packing). Each script reads as: parse config -> data -> model + LoRA ->
trainer -> train (resume) -> save final/ -> metrics; the pieces live here, where tests import them.

Where the rest lives: the phases' settings in pipeline_lib/sft_config.py, the Harmony data and assistant-only
loss masks in pipeline_lib/sft_data.py, packing in pipeline_lib/pack_sft.py, resume in pipeline_lib/checkpoints.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.checkpoints import resume_problems
from pipeline_lib.modeling import flex_pad_multiple
from pipeline_lib.sft_config import PhaseSFTConfig, SFTScriptArguments
from pipeline_lib.sft_data import load_text_dataset, tokenize_sft_dataset


# ------------------------------------------------------------------------------------------------------------ data
@dataclass
class SFTData:
    train: Any
    eval: Any | None
    packed: bool
    stats: dict[str, Any]


def eval_row_count(n_rows: int, eval_split_size: float) -> int:
    n = math.ceil(n_rows * eval_split_size) if eval_split_size < 1 else int(eval_split_size)
    return max(1, min(n, n_rows - 1))


def effective_packing(packing: bool, backend: str) -> tuple[bool, str | None]:
    """Whether this backend can train packed rows, and why not.

    Unsloth 2026.10.9 swaps in its own collator for gpt_oss that sends an attention_mask and no position_ids, so
    packed conversations would attend to each other (measured on the H100, 2026-11-25:
    check_packed_collation failed on it). Training unpacked there is correct and, at batch 1 (the agent profiles),
    costs no padding; the note lands in phase_metrics.json so the choice is visible.
    """
    if packing and backend == "unsloth":
        return False, ("packing off: Unsloth's gpt_oss collator drops position_ids (conversations would attend to "
                       "each other); trained unpacked. Use --backend hf or fast to train packed.")
    return packing, None


def prepare_sft_data(train_data_path: str, tokenizer: Any, **kwargs: Any) -> SFTData:
    """Load -> (held-out split) -> tokenize + mask + truncate -> (pack, reusing ``<path>_packed_<len>/``).

    Under several processes (accelerate launch / torchrun) rank 0 prepares and writes the packed folder first; the
    other ranks then read it instead of packing into the same folder at the same time.
    """
    from accelerate import PartialState

    with PartialState().main_process_first():
        return _prepare_sft_data(train_data_path, tokenizer, **kwargs)


def _prepare_sft_data(train_data_path: str, tokenizer: Any, *, max_seq_length: int, packing: bool,
                      eval_strategy: str, eval_split_size: float, seed: int, text_field: str = "text",
                      max_train_samples: int | None = None, num_proc: int | None = None,
                      packing_note: str | None = None) -> SFTData:
    from pipeline_lib.pack_sft import load_or_pack, packed_dataset_dir, packed_train_key

    raw = load_text_dataset(train_data_path, text_field)
    if max_train_samples:
        raw = raw.select(range(min(max_train_samples, len(raw))))
    eval_raw = None
    eval_rows = 0
    if eval_strategy != "no":
        if len(raw) < 2:
            raise ValueError(f"--eval_strategy {eval_strategy} needs >= 2 rows to hold one out, have {len(raw)}")
        eval_rows = eval_row_count(len(raw), eval_split_size)
        split = raw.train_test_split(test_size=eval_rows, seed=seed)
        train_raw, eval_raw = split["train"], split["test"]
    else:
        train_raw = raw
    stats: dict[str, Any] = {"eval_rows": eval_rows}
    eval_ds = None
    if eval_raw is not None:
        eval_ds, stats["eval_tokenization"] = tokenize_sft_dataset(eval_raw, tokenizer, max_seq_length, text_field,
                                                                   num_proc)

    def tokenize_train() -> tuple[Any, dict[str, int]]:
        return tokenize_sft_dataset(train_raw, tokenizer, max_seq_length, text_field, num_proc)

    if not packing:
        train, stats["tokenization"] = tokenize_train()
        # packing_note (effective_packing): why rows asked to be packed are not, kept in phase_metrics.json
        stats["packing"] = {"packed": False, **({"note": packing_note} if packing_note else {})}
        return SFTData(train, eval_ds, False, stats)
    key = packed_train_key(raw, max_seq_length, tokenizer, eval_rows=eval_rows, max_train_samples=max_train_samples,
                           seed=seed)
    folder = packed_dataset_dir(train_data_path, max_seq_length)
    train, info = load_or_pack(tokenize_train, folder, max_seq_length, key,
                               extra_info={"train_data_path": str(train_data_path)})
    stats["tokenization"] = info.pop("tokenization", None)
    stats["packing"] = info
    return SFTData(train, eval_ds, True, stats)


# --------------------------------------------------------------------------------------------------------- trainer
def choose_phase_backend(phase: str, model_path: str, script_args: SFTScriptArguments,
                         training_args: PhaseSFTConfig, print_fn: Callable[[str], None] = print) -> bool:
    """Pick the phase's backend once, before its data is prepared (it decides packing), and say why.

    Sets ``script_args.backend`` (auto -> unsloth/fast/hf, unsloth_utils.auto_backend) and
    ``script_args.backend_reason``; returns whether the rows are packed (sft.effective_packing: never on Unsloth).
    """
    from pipeline_lib.unsloth_utils import choose_backend

    backend, why = choose_backend(script_args.backend, model=model_path, packing=bool(training_args.packing),
                                  load_in_4bit=bool(getattr(script_args, "load_in_4bit", False)))
    script_args.backend, script_args.backend_reason = backend, why
    print_fn(f"[{phase}] backend {backend}: {why}")
    packing, note = effective_packing(bool(training_args.packing), backend)
    script_args.packing_note = note
    if note:
        print_fn(f"[{phase}] WARNING: {note}")
    return packing


def load_adapted_model(model_path: str, script_args: SFTScriptArguments, training_args: PhaseSFTConfig,
                       merge_adapter: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Base model (+ an adapter merged in first, Phase 2's --lang_adapter) + LoRA; returns (model, info).

    ``script_args.backend`` is the one choose_phase_backend picked (an unresolved 'auto' is resolved here)."""
    from pipeline_lib import unsloth_utils as lora

    backend = lora.resolve_backend(script_args.backend, model=model_path, packing=bool(training_args.packing),
                                   load_in_4bit=script_args.load_in_4bit)
    model, _ = lora.load_model_for_training(model_path, backend=backend, max_seq_length=training_args.max_seq_length,
                                       load_in_4bit=script_args.load_in_4bit)
    if merge_adapter:
        if backend == "unsloth":
            raise ValueError("--lang_adapter merging runs on --backend hf or fast; merge it first with "
                             "scripts/19_merge_adapter.py and pass the merged folder as --base_model")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, merge_adapter).merge_and_unload()
    experts_targeted = script_args.include_experts and lora.is_moe(model)
    model = lora.apply_lora_config(model, script_args.lora_r, lora_alpha=script_args.lora_alpha,
                              lora_dropout=script_args.lora_dropout, include_experts=script_args.include_experts,
                              backend=backend, max_seq_length=training_args.max_seq_length, seed=training_args.seed)
    if backend == "unsloth":
        # Unsloth already wraps the model in its offloaded gradient checkpointing (use_gradient_checkpointing=
        # "unsloth"); the Trainer's own would checkpoint twice.
        training_args.gradient_checkpointing = False
    report = lora.trainable_report(model)
    return model, {"backend": backend, "backend_reason": getattr(script_args, "backend_reason", None),
                   "trainable": report, "experts_targeted": experts_targeted, "merged_adapter": merge_adapter,
                   "training_path": lora.training_path(model, backend)}


def build_sft_trainer(model: Any, tokenizer: Any, training_args: PhaseSFTConfig, data: SFTData,
                      callbacks: list | None = None) -> Any:
    """SFTTrainer over the pre-tokenized data; packed data goes through TRL's padding-free collator."""
    # Rows are already tokenized, truncated (and packed) by prepare_sft_data: TRL only builds labels from
    # assistant_masks and collates.
    training_args.packing = False
    training_args.padding_free = data.packed
    if not data.packed and training_args.pad_to_multiple_of is None:
        # unpacked rows under flex: a batch of rows shorter than flex's block fails in inductor (modeling.py)
        training_args.pad_to_multiple_of = flex_pad_multiple(model)
    if data.packed:
        # TRL refuses padding_free + max_length without its own packing; packed rows are <= max_seq_length already.
        training_args.max_length = None
    from trl import SFTTrainer

    from pipeline_lib.trl_cpu import install_cpu_logprob_head

    install_cpu_logprob_head()  # CPU only: TRL's loss kernel is Triton
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=data.train, eval_dataset=data.eval,
                          processing_class=tokenizer, callbacks=callbacks)
    if data.packed:
        from pipeline_lib import pack_sft

        pack_sft.enable_packed_attention(trainer.model)
        stats = data.stats["packing"]
        stats["collation_check"] = pack_sft.check_packed_collation(trainer.data_collator, trainer.train_dataset)
        counts = [len(x) for x in trainer.train_dataset["seq_lengths"]]
        row = trainer.train_dataset[max(range(len(counts)), key=counts.__getitem__)]
        if len(row["seq_lengths"]) >= 2:
            n0, n1 = row["seq_lengths"][:2]
            first, second = row["input_ids"][:n0], row["input_ids"][n0:n0 + n1]
            # 128-token prefixes: three short forwards, seconds even on the 20B model
            stats["attention_check"] = pack_sft.verify_packed_attention(trainer.model, first[-128:], second[:128])
    return trainer


def final_evaluate(trainer: Any, data: SFTData) -> None:
    """Evaluate on the held-out rows at the end, unless the last step was just evaluated."""
    if data.eval is None:
        return
    evaluated = [e.get("step") for e in trainer.state.log_history if "eval_loss" in e]
    if not evaluated or evaluated[-1] != trainer.state.global_step:
        trainer.evaluate()


def last_logged(log_history: list[dict[str, Any]], key: str) -> float | None:
    values = [e[key] for e in log_history if isinstance(e.get(key), int | float) and math.isfinite(e[key])]
    return float(values[-1]) if values else None


def finalize_sft_phase(trainer: Any, tokenizer: Any, *, phase: str, base_model: str, script_args: Any,
                       training_args: Any, model_info: dict[str, Any], data: SFTData, lora_check: dict[str, Any],
                       resumed_from: str | None, throughput: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write final/ (adapter, tokenizer, trainer_state.json, provenance.json, phase_metrics.json); return metrics."""
    from pipeline_lib.metrics import get_avg_loss, loss_history, write_phase_metrics
    from pipeline_lib.provenance import write_provenance

    final = Path(training_args.output_dir) / "final"
    # Several processes (accelerate launch / torchrun): every rank computes the metrics, rank 0 alone writes.
    writer = trainer.is_world_process_zero()
    trainer.save_model(str(final))  # saves on rank 0 only (TrainingArguments.should_save)
    fingerprint: dict[str, Any] = {}
    # FSDP2: the fingerprint's forward all-gathers every layer, so all ranks run it (rank 0 writes); under DDP rank
    # 0's copy of the adapter is every rank's and it runs alone.
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False))
    if writer:
        from pipeline_lib.fingerprint import require_saved_adapter

        require_saved_adapter(final, trainer.model, f"[{phase}] ({model_info['backend']} backend)")
        final.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(final))
        trainer.state.save_to_json(str(final / "trainer_state.json"))
    if writer or sharded:
        # The logits this process (whatever backend trained) gives; merge/IPO/export re-check them through PEFT.
        from pipeline_lib.fingerprint import record_fingerprint

        try:
            fingerprint = record_fingerprint(trainer.model, final, write=writer, backend=model_info["backend"],
                                             phase=phase)
        except Exception as exc:  # the adapter itself is saved: later loaders then report "not recorded"
            fingerprint = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"[{phase}] WARNING: could not record the adapter's logits fingerprint: {fingerprint['error']}",
                  file=sys.stderr, flush=True)
    trainer.accelerator.wait_for_everyone()
    state = json.loads((final / "trainer_state.json").read_text())
    history = loss_history(state)
    resumed_step = None
    if resumed_from:
        # Not read from resumed_from/trainer_state.json: save_total_limit may have rotated that checkpoint away
        # during the resumed run (seen: resume from checkpoint-10, limit 3, saves at 20/30/40). HF names it by step.
        suffix = Path(resumed_from).name.rsplit("-", 1)[-1]
        resumed_step = (int(suffix) if suffix.isdigit()
                        else json.loads((Path(resumed_from) / "trainer_state.json").read_text()).get("global_step"))
    metrics = {
        "phase": phase,
        "avg_loss_last_10": get_avg_loss(training_args.output_dir, 10),
        "first_loss": history[0][1] if history else None,
        "last_loss": history[-1][1] if history else None,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "trainable_params": model_info["trainable"]["trainable"],
        "trainable": model_info["trainable"],
        "lora_r": script_args.lora_r,
        "lora_alpha": script_args.lora_alpha if script_args.lora_alpha is not None else 2 * script_args.lora_r,
        "base_model": base_model,
        "merged_adapter": model_info.get("merged_adapter"),
        "backend": model_info["backend"],
        "backend_reason": model_info.get("backend_reason"),
        "training_path": model_info.get("training_path"),
        "max_seq_length": training_args.max_seq_length,
        "lora_update_check": lora_check,
        "packing": data.stats.get("packing"),
        "tokenization": data.stats.get("tokenization"),
        "eval_rows": data.stats.get("eval_rows", 0),
        "eval_token_accuracy": last_logged(state.get("log_history", []), "eval_mean_token_accuracy"),
        "eval_loss": last_logged(state.get("log_history", []), "eval_loss"),
        "resumed_from_checkpoint": resumed_from,
        "resumed_from_step": resumed_step,
        "throughput": throughput,
        "fingerprint": {k: fingerprint.get(k) for k in ("adapter_effect_rel", "noise_rel", "compute_dtype", "error")},
    }
    metrics["world_size"] = trainer.args.world_size
    if writer:
        config = {"script_args": dataclasses.asdict(script_args), "training_args": training_args.to_dict()}
        write_provenance(final, config, phase=phase, base_model=base_model, metrics=metrics)
        write_phase_metrics(final, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def check_phase_outcome(metrics: dict[str, Any]) -> None:
    """Fail loudly (after final/ is written, so the evidence stays) on silent failures other tools ship: experts
    frozen while the logs claim MoE LoRA, a resume that trains nothing."""
    problems = []
    if not metrics["lora_update_check"]["passed"]:
        problems.append("LoRA update check: " + "; ".join(metrics["lora_update_check"]["problems"]))
    problems += resume_problems(metrics)
    if metrics["avg_loss_last_10"] is None:
        problems.append("no training loss was logged")
    if problems:
        from pipeline_lib.unsloth_utils import LoraUpdateError

        raise LoraUpdateError(f"{metrics['phase']} finished but is not trustworthy: " + " | ".join(problems))


def summary_line(metrics: dict[str, Any], output_dir: str) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    experts = metrics["lora_update_check"].get("expert_lora_changed")
    return (f"{metrics['phase']}: OK steps={metrics['global_step']} loss {fmt(metrics['first_loss'])} -> "
            f"avg_last_10 {fmt(metrics['avg_loss_last_10'])} trainable={metrics['trainable_params']:,} "
            f"r={metrics['lora_r']} expert_lora_changed={experts} "
            f"packed={bool((metrics.get('packing') or {}).get('packed'))} "
            f"eval_acc={fmt(metrics['eval_token_accuracy'])} -> {Path(output_dir) / 'final'}")


def banner(phase: str, model_path: str, script_args: Any, training_args: Any, data: SFTData,
           model_info: dict[str, Any], print_fn: Callable[[str], None] = print) -> None:
    tok = data.stats.get("tokenization") or {}
    pack = data.stats.get("packing") or {}
    trainable = model_info["trainable"]
    args = training_args
    print_fn(f"[{phase}] model={model_path} backend={model_info['backend']} lora_r={script_args.lora_r} "
             f"trainable={trainable['trainable']:,} (experts {trainable['lora_experts']:,})")
    print_fn(f"[{phase}] training path: {model_info.get('training_path')}")
    print_fn(f"[{phase}] data={script_args.train_data_path} rows={tok.get('rows_kept')} "
             f"dropped_no_trained_tokens={tok.get('dropped_no_trained_tokens')} truncated={tok.get('truncated')} "
             f"packed={pack.get('packed')} rows_packed={pack.get('rows')} eval_rows={data.stats.get('eval_rows')}")
    print_fn(f"[{phase}] batch={args.per_device_train_batch_size}x{args.gradient_accumulation_steps} "
             f"seq={args.max_seq_length} max_steps={args.max_steps} epochs={args.num_train_epochs} "
             f"lr={args.learning_rate} out={args.output_dir}")
