"""Supervised fine-tuning on Harmony conversations: configs, assistant-only loss masks, data, trainer, final save.

Used by scripts/13_train_lang_adapter.py (Phase 1, tool calling, LoRA r64) and scripts/14_train_core_agent.py
(Phase 2, agent trajectories, LoRA r128, packing). Each script reads as: parse config -> data -> model + LoRA ->
trainer -> train (resume) -> save final/ -> metrics; the pieces live here, where tests import them.

Loss mask (the one rule, from token ids): for every ``<|start|>`` (200006) followed by the role token ``assistant``
(173781) and then a header boundary (``<|channel|>``, ``<|message|>`` or a whitespace-led token such as
`` to=functions.x``), the trained span is every token after the role up to and including that message's end token
(``<|end|>`` 200007, ``<|call|>`` 200012 or ``<|return|>`` 200002) — exactly what the model generates after
``<|start|>assistant``: analysis, tool calls and final answers. System, developer, user and tool-result tokens
(``<|start|>functions.x to=assistant...``) are never trained. A span also stops before a ``<|start|>`` (a missing end
token never leaks training into the next message) or at the end of a truncated sequence.

The masks reach TRL 1.15 as the ``assistant_masks`` column of a pre-tokenized dataset: SFTTrainer's
``_prepare_dataset`` turns it into ``labels`` (-100 where the mask is 0) and DataCollatorForLanguageModeling pads
labels with -100. We tokenize ourselves rather than use ``assistant_only_loss=True`` because that needs a chat
template with ``{% generation %}`` markers and our data is already-rendered Harmony text, not messages.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trl import SFTConfig

from pipeline_lib import phases
from pipeline_lib.tokenizer import CALL_ID, END_ID, RETURN_ID

START_ID = 200006
CHANNEL_ID = 200005
MESSAGE_ID = 200008
MESSAGE_END_IDS = frozenset({END_ID, CALL_ID, RETURN_ID})
FIRST_SPECIAL_ID = 199998  # ids >= this are Harmony control tokens


# --------------------------------------------------------------------------------------------------------- configs
@dataclass
class PhaseSFTConfig(SFTConfig):
    """SFTConfig with this machine's precision filled in and the writeup's ``--max_seq_length`` flag.

    bf16 / use_cpu come from pipeline_lib.modeling.detect_precision (TRL defaults to bf16, which a CPU rejects);
    gradient_checkpointing defaults to on only on CUDA (on CPU it only slows the tiny model down).
    """

    max_seq_length: int | None = field(default=None, metadata={"help": "Tokens per sample/packed row (= max_length)."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Recompute activations in backward. Default: on with CUDA, off on CPU."})
    include_num_input_tokens_seen: str = field(
        default="non_padding", metadata={"help": "Count trained-on tokens (throughput in phase_metrics.json)."})

    def __post_init__(self) -> None:
        from pipeline_lib.modeling import detect_precision

        precision = detect_precision()
        if self.bf16 is None and not self.fp16:
            self.bf16 = precision.bf16
        if precision.device == "cpu":
            self.use_cpu = True
        if self.gradient_checkpointing is None:
            self.gradient_checkpointing = precision.device == "cuda"
        if self.max_seq_length is not None:
            self.max_length = self.max_seq_length
        self.max_seq_length = self.max_length
        if not self.max_seq_length or self.max_seq_length < 16:
            raise ValueError(f"--max_seq_length must be >= 16, got {self.max_seq_length}")
        super().__post_init__()


@dataclass
class ToolCallingSFTConfig(PhaseSFTConfig):
    output_dir: str = field(default=phases.default_run_dir(phases.TOOL_CALLING), metadata={"help": "Run folder."})


@dataclass
class AgentSFTConfig(PhaseSFTConfig):
    output_dir: str = field(default=phases.default_run_dir(phases.AGENT_SFT), metadata={"help": "Run folder."})
    packing: bool = field(default=True, metadata={
        "help": "Pack conversations into max_seq_length rows (pipeline_lib/pack_sft.py). --no-packing turns it off."})


@dataclass
class SFTScriptArguments:
    """What to train on and how to adapt: the flags that are not TrainingArguments."""

    train_data_path: str = field(default=phases.default_train_data(phases.TOOL_CALLING), metadata={
        "help": "datasets save_to_disk folder with a Harmony `text` column."})
    lora_r: int | None = field(default=None, metadata={"help": "LoRA rank (configs/<phase>.yaml sets it)."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 * lora_r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (must be 0 with expert LoRA)."})
    include_experts: bool = field(default=True, metadata={
        "help": "LoRA on the MoE experts too (--no-include-experts: attention only)."})
    backend: Literal["auto", "unsloth", "hf", "fast"] = field(default="auto", metadata={
        "help": "auto: Unsloth when CUDA + unsloth are importable, else transformers + PEFT (hf). fast: the hf model "
                "and adapter with pipeline_lib/fast_path.py computing the expert LoRA."})
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA (unsloth backend only)."})
    eval_split_size: float = field(default=0.05, metadata={
        "help": "Held-out fraction (<1) or row count (>=1) when --eval_strategy is not 'no'."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    print_mask_example: bool = field(default=False, metadata={
        "help": "Print the first training sample with trained tokens highlighted, then continue."})

    def __post_init__(self) -> None:
        if self.lora_r is None:
            raise ValueError("lora_r is not set: the phase's configs/*.yaml sets it (or pass --lora_r N)")
        if self.lora_r < 1:
            raise ValueError(f"--lora_r must be >= 1, got {self.lora_r}")
        if self.eval_split_size <= 0:
            raise ValueError(f"--eval_split_size must be > 0, got {self.eval_split_size}")


@dataclass
class ToolCallingScriptArguments(SFTScriptArguments):
    model_name_or_path: str = field(default="openai/gpt-oss-20b", metadata={
        "help": "Base model: hub id or local folder (the tiny model: checkpoints/tiny-gpt-oss)."})


@dataclass
class AgentScriptArguments(SFTScriptArguments):
    base_model: str = field(default=phases.default_merged_model(), metadata={
        "help": "Base model: the Phase 1.5 merged model folder."})
    train_data_path: str = field(default=phases.default_train_data(phases.AGENT_SFT), metadata={
        "help": "datasets save_to_disk folder with a Harmony `text` column."})
    lang_adapter: str | None = field(default=None, metadata={
        "help": "A LoRA adapter to merge into --base_model before training (language pipelines; the TUI pipeline "
                "has none)."})
    no_merge_lang_adapter: bool = field(default=False, metadata={
        "help": "Merge no language adapter (the TUI pipeline's setting; also the default when --lang_adapter is "
                "not given)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lang_adapter and self.no_merge_lang_adapter:
            raise ValueError("--lang_adapter and --no-merge-lang-adapter contradict each other: drop one")


def parse_phase_args(script_cls: type, config_cls: type, default_config: str | os.PathLike,
                     argv: Sequence[str] | None = None) -> tuple[Any, Any]:
    """(script args, SFTConfig subclass) through pipeline_lib.config.parse_args_with_default_config."""
    from pipeline_lib.config import parse_args_with_default_config

    script_args, training_args = parse_args_with_default_config((script_cls, config_cls), default_config, argv)
    return script_args, training_args


# ------------------------------------------------------------------------------------------------------ loss masks
class HarmonyMasker:
    """Assistant-only loss masks over token ids (see the module docstring for the rule)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.role_ids = tokenizer("assistant", add_special_tokens=False)["input_ids"]
        if not self.role_ids:
            raise ValueError("tokenizer encodes 'assistant' to nothing")

    def _is_header_boundary(self, token_id: int) -> bool:
        if token_id >= FIRST_SPECIAL_ID:
            return True
        text = self.tokenizer.decode([token_id])
        return bool(text) and text[0].isspace()

    def mask(self, input_ids: Sequence[int]) -> list[int]:
        ids = list(input_ids)
        n, k = len(ids), len(self.role_ids)
        mask = [0] * n
        i = 0
        while i < n:
            role_end = i + 1 + k
            if (ids[i] == START_ID and ids[i + 1:role_end] == self.role_ids
                    and (role_end >= n or self._is_header_boundary(ids[role_end]))):
                j = role_end
                while j < n and ids[j] != START_ID:
                    mask[j] = 1
                    if ids[j] in MESSAGE_END_IDS:
                        j += 1
                        break
                    j += 1
                i = j
            else:
                i += 1
        return mask


@dataclass
class TokenizeStats:
    rows_in: int
    rows_kept: int
    dropped_no_trained_tokens: int
    truncated: int
    tokens: int
    trained_tokens: int
    max_seq_length: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def tokenize_sft_dataset(dataset: Any, tokenizer: Any, max_seq_length: int, text_field: str = "text",
                         num_proc: int | None = None) -> tuple[Any, dict[str, int]]:
    """Harmony text -> ``input_ids`` + ``assistant_masks``, truncated (keep start) to max_seq_length.

    Rows left with no trained token (all-prompt, or truncated before the first assistant token) are dropped and
    counted: they would add nothing but padding to a batch.
    """
    masker = HarmonyMasker(tokenizer)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "assistant_masks": [], "n_trained": [], "truncated": []}
        for ids in tokenizer(batch[text_field], add_special_tokens=False)["input_ids"]:
            mask = masker.mask(ids)
            out["truncated"].append(len(ids) > max_seq_length)
            ids, mask = ids[:max_seq_length], mask[:max_seq_length]
            out["input_ids"].append(ids)
            out["assistant_masks"].append(mask)
            out["n_trained"].append(sum(mask))
        return out

    rows_in = len(dataset)
    encoded = dataset.map(encode, batched=True, remove_columns=dataset.column_names, num_proc=num_proc,
                          desc="Tokenizing + assistant masks")
    n_trained = encoded["n_trained"]
    lengths = [len(x) for x in encoded["input_ids"]]
    truncated = encoded["truncated"]
    keep = [i for i, n in enumerate(n_trained) if n > 0]
    kept = encoded.select(keep).remove_columns(["n_trained", "truncated"])
    stats = TokenizeStats(rows_in=rows_in, rows_kept=len(keep), dropped_no_trained_tokens=rows_in - len(keep),
                          truncated=int(sum(truncated)), tokens=int(sum(lengths[i] for i in keep)),
                          trained_tokens=int(sum(n_trained[i] for i in keep)), max_seq_length=max_seq_length)
    if not len(kept):
        raise ValueError(f"no row has an assistant token within max_seq_length={max_seq_length} "
                         f"({rows_in} rows in): check the data is Harmony text with assistant messages")
    return kept, stats.as_dict()


def render_mask(input_ids: Sequence[int], mask: Sequence[int], tokenizer: Any) -> Any:
    """rich Text of a sample: trained tokens bold green on black, untrained dim; control tokens in cyan/blue."""
    from rich.text import Text

    text = Text()
    for token_id, m in zip(input_ids, mask, strict=True):
        piece = tokenizer.decode([token_id])
        special = token_id >= FIRST_SPECIAL_ID
        if m:
            text.append(piece, style="bold bright_cyan on grey15" if special else "bold green on grey15")
        else:
            text.append(piece, style="blue" if special else "dim")
    return text


def print_mask_example(dataset: Any, tokenizer: Any, index: int = 0, console: Any = None) -> None:
    """Print one tokenized sample with its loss mask (``--print_mask_example``)."""
    from rich.console import Console
    from rich.panel import Panel

    console = console or Console(stderr=True)
    row = dataset[index]
    mask = row["assistant_masks"]
    if "seq_lengths" in row:  # a packed row: show its first conversation
        mask = mask[:row["seq_lengths"][0]]
    ids = row["input_ids"][:len(mask)]
    title = f"sample {index}: {sum(mask)}/{len(ids)} tokens trained (green = loss, dim = context)"
    console.print(Panel(render_mask(ids, mask, tokenizer), title=title))


# ------------------------------------------------------------------------------------------------------------ data
def load_text_dataset(path: str | os.PathLike, text_field: str = "text") -> Any:
    """load_from_disk with early, specific errors (missing folder, missing column, empty, non-Harmony text)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--train_data_path {folder}: no such folder (run data prep first: "
                                "scripts/tui_data_prep.py)")
    dataset = load_from_disk(str(folder))
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise ValueError(f"--train_data_path {folder}: DatasetDict without a 'train' split ({list(dataset)})")
        dataset = dataset["train"]
    if not isinstance(dataset, Dataset):
        raise ValueError(f"--train_data_path {folder}: expected a datasets.Dataset, got {type(dataset).__name__}")
    if text_field not in dataset.column_names:
        raise ValueError(f"--train_data_path {folder}: no '{text_field}' column (has {dataset.column_names})")
    if len(dataset) == 0:
        raise ValueError(f"--train_data_path {folder}: the dataset is empty")
    first = dataset[0][text_field]
    if not isinstance(first, str) or "<|start|>" not in first:
        raise ValueError(f"--train_data_path {folder}: row 0 '{text_field}' is not Harmony text "
                         f"(no <|start|>): {str(first)[:80]!r}")
    return dataset


def packed_train_key(dataset: Any, max_seq_length: int, tokenizer: Any, *, eval_rows: int,
                     max_train_samples: int | None, seed: int = 0) -> str:
    """What a packed train split is made from; a pre-packed folder with another key is rebuilt."""
    from pipeline_lib.pack_sft import pack_key

    return pack_key(source=dataset._fingerprint, rows=len(dataset), max_seq_length=max_seq_length,
                    vocab=len(tokenizer), role_ids=HarmonyMasker(tokenizer).role_ids, eval_rows=eval_rows,
                    max_train_samples=max_train_samples, seed=seed if eval_rows else None, mask_rule=1)


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
                      max_train_samples: int | None = None, num_proc: int | None = None) -> SFTData:
    from pipeline_lib.pack_sft import load_or_pack, packed_dataset_dir

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
        stats["packing"] = {"packed": False}
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
def load_adapted_model(model_path: str, script_args: SFTScriptArguments, training_args: PhaseSFTConfig,
                       merge_adapter: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Base model (+ an adapter merged in first, Phase 2's --lang_adapter) + LoRA; returns (model, info)."""
    from pipeline_lib import unsloth_utils as lora

    backend = lora.resolve_backend(script_args.backend, model=model_path)
    if backend == "hf" and script_args.backend == "auto" and lora.is_mxfp4_checkpoint(model_path):
        print(f"[backend] hf: {model_path} is a released MXFP4 checkpoint, which Unsloth does not train into a "
              "PEFT-reproducible adapter (docs/BENCHMARKS.md 'GPU smoke run'); later phases train the merged bf16 "
              "model", flush=True)
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
    return model, {"backend": backend, "trainable": report, "experts_targeted": experts_targeted,
                   "merged_adapter": merge_adapter, "training_path": lora.training_path(model, backend)}


def build_sft_trainer(model: Any, tokenizer: Any, training_args: PhaseSFTConfig, data: SFTData,
                      callbacks: list | None = None) -> Any:
    """SFTTrainer over the pre-tokenized data; packed data goes through TRL's padding-free collator."""
    # Rows are already tokenized, truncated (and packed) by prepare_sft_data: TRL only builds labels from
    # assistant_masks and collates.
    training_args.packing = False
    training_args.padding_free = data.packed
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


def train_to_max_steps(trainer: Any, resume: str | None) -> None:
    """``trainer.train(resume_from_checkpoint=resume)``, except when that checkpoint already reached max_steps.

    transformers 5.17 checks max_steps only after an optimizer step: resuming a checkpoint at global_step ==
    max_steps mid-epoch (agent SFT: checkpoint-30 of a max_steps 30 run, 30 steps not a whole number of epochs)
    trained a 31st step. Then the checkpoint's weights and trainer state are loaded as they are (Trainer's own
    ``_load_from_checkpoint``, what ``train(resume_from_checkpoint=...)`` calls) and nothing is trained.
    """
    injected = os.environ.get("PIPELINE_TEST_FAIL_RANK")  # tests only: tests/test_multiprocess.py
    if injected is not None and injected == os.environ.get("RANK", "0"):
        raise RuntimeError(f"injected failure on rank {injected} (PIPELINE_TEST_FAIL_RANK)")
    if resume:
        from transformers import TrainerState

        state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
        if 0 < trainer.args.max_steps <= state.global_step:
            trainer._load_from_checkpoint(resume)
            trainer.state = state
            print(f"{Path(resume).name} is at global_step {state.global_step} >= max_steps "
                  f"{trainer.args.max_steps}: nothing left to train, final/ is written from it")
            return
    trainer.train(resume_from_checkpoint=resume)


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
        from pipeline_lib.fingerprint import AdapterSaveMismatch, saved_adapter_problems

        problems = saved_adapter_problems(final, trainer.model)
        if problems:
            raise AdapterSaveMismatch(f"[{phase}] the saved adapter is not what was trained ({model_info['backend']} "
                                      f"backend): " + "; ".join(problems) + ". Rerun with --backend hf or fast.")
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


def resume_problems(metrics: dict[str, Any]) -> list[str]:
    """A resume that trained nothing (global_step never passed the resumed step): the rule every phase checks."""
    resumed = metrics.get("resumed_from_step")
    if resumed is not None and resumed < metrics["max_steps"] and metrics["global_step"] <= resumed:
        return [f"resume trained nothing: global_step stayed at {resumed}"]
    return []


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
