"""Settings of the two SFT phases (scripts/13_train_lang_adapter.py, scripts/14_train_core_agent.py): TRL's
``SFTConfig`` with this machine's precision, plus the script arguments that are not TrainingArguments. Parsed through
``pipeline_lib.config`` (dataclass < configs/<phase>.yaml < command line); the training code is in
``pipeline_lib.sft``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from trl import SFTConfig

from pipeline_lib import phases


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
