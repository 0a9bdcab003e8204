"""Loading GPT-OSS models for training and inference on whatever machine we are on (CPU box or H100).

One place decides dtype, attention and expert kernels so every phase loads models the same way:
- CUDA: bf16, ``flex_attention`` (FA2/FA3 lack the attention-sink backward; flex measured 4,440 tok/s vs 1,716
  eager at seq 4096 on the H100) and ``grouped_mm`` experts.
- CPU: float32 and eager attention (the only path that runs everywhere; the tiny model is small enough).
MXFP4 checkpoints (the released gpt-oss-20b) are dequantized to bf16 on load: LoRA training and merging need
real weights, and the merged model is saved in bf16 (writeup: ~39 GB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Precision:
    device: str  # "cuda" or "cpu"
    bf16: bool
    torch_dtype_name: str  # "bfloat16" or "float32"
    attn_implementation: str
    experts_implementation: str | None

    def trainer_kwargs(self) -> dict:
        """Arguments for TRL/transformers TrainingArguments (their configs default to bf16, which CPUs reject)."""
        return {"bf16": self.bf16, "fp16": False, "use_cpu": self.device == "cpu"}


def detect_precision(attn_implementation: str | None = None) -> Precision:
    import torch

    if torch.cuda.is_available():
        return Precision("cuda", True, "bfloat16", attn_implementation or "flex_attention", "grouped_mm")
    return Precision("cpu", False, "float32", attn_implementation or "eager", None)


def inference_precision() -> Precision:
    """The loaders' precision for no-grad work (merge, export, evaluation, the smoke checks): the machine's dtype
    with eager attention. flex_attention's eval compile (max-autotune) failed on the H100 for short probes
    (NoValidChoicesError, 2026-11-25); eager handles the sinks and needs no compile."""
    return detect_precision(attn_implementation="eager")


def local_device_index() -> int:
    """This process's GPU: LOCAL_RANK under accelerate launch / torchrun (DDP: one model copy per GPU), else 0.
    Every rank loading onto GPU 0 first would put N copies of the weights on one card."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def fsdp_launched() -> bool:
    """Under ``accelerate launch --config_file configs/accelerate/fsdp2.yaml`` (it exports ACCELERATE_USE_FSDP):
    the model loads on CPU and accelerate's FSDP2 prepare moves each rank's shard to its GPU, so no rank ever
    holds the whole bf16 model on a GPU."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def is_local_model(name_or_path: str | os.PathLike) -> bool:
    return Path(name_or_path).is_dir()


def load_config(name_or_path: str | os.PathLike):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(name_or_path))


def load_causal_lm(name_or_path: str | os.PathLike, precision: Precision | None = None, **kwargs):
    """AutoModelForCausalLM with this machine's dtype/kernels; MXFP4 weights are dequantized."""
    import torch
    from transformers import AutoModelForCausalLM

    precision = precision or detect_precision()
    if precision.attn_implementation == "flex_attention":
        raise_flex_recompile_limit()
    config = load_config(name_or_path)
    load_kwargs = {
        "dtype": getattr(torch, precision.torch_dtype_name),
        "attn_implementation": precision.attn_implementation,
    }
    if precision.experts_implementation:
        load_kwargs["experts_implementation"] = precision.experts_implementation
    if getattr(config, "quantization_config", None):
        from transformers import Mxfp4Config

        load_kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
    if precision.device == "cuda" and not fsdp_launched():
        load_kwargs["device_map"] = {"": local_device_index()}
    load_kwargs.update(kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **load_kwargs)
    if getattr(config, "quantization_config", None):
        # transformers 5.17 dequantizes MXFP4 experts to bf16 whatever dtype was asked for (measured on CPU: fp32
        # model, bf16 experts). The E2M1 x 2**k values are exact in bf16, so this cast changes no value; it keeps
        # one dtype across the model (a bf16 expert under an fp32 LoRA would round the CPU merge check's sums).
        model = model.to(load_kwargs["dtype"])
        forget_mxfp4_conversion(model)
    return model


def forget_mxfp4_conversion(model) -> int:
    """Drop the MXFP4 -> bf16 weight conversion transformers remembers for save_pretrained; returns how many.

    transformers 5.17 keeps the conversions a load used (``model._weight_conversions``) and reverses them on save.
    The reverse of its Mxfp4Dequantize writes the dequantized experts under the literal keys ``gate_up_proj$`` /
    ``down_proj$`` (its target regexes) and drops every ``mlp.experts.gate_up_proj`` / ``down_proj`` (measured on
    the tiny model: 35 of 37 tensors saved). A merge of the released checkpoint would save a model without experts
    (the merge's saved_equals_merged check failed on it). Without the conversion the model saves plain bf16 tensors
    under their own names, which is what the merged model is."""
    from transformers.integrations.mxfp4 import Mxfp4Dequantize

    conversions = getattr(model, "_weight_conversions", None) or []
    kept = [c for c in conversions if not any(isinstance(op, Mxfp4Dequantize) for op in getattr(c, "operations", []))]
    model._weight_conversions = kept
    return len(conversions) - len(kept)


# transformers compiles flex_attention once per training/eval switch (transformers 5.17: dynamic=False on torch
# <= 2.6, so each new sequence length recompiles; torch's default automatic-dynamic shapes on newer torch, which
# still recompile for each mask structure: sliding vs full layers, packed vs single-sequence, eval vs train). Past
# dynamo's default cache_size_limit of 8 it silently falls back to the dense math path: measured on the H100
# (2026-11-25, Phase 2 packed at 32K, after the packed-attention check's eval forwards) that tried to allocate
# 220 GiB. 64 variants cover a phase's shapes without hiding a real recompile storm.
FLEX_RECOMPILE_LIMIT = 64


# flex_attention's block is 128 tokens. inductor lowers a query shorter than one block to its flex *decoding*
# kernel, which has no valid choice for a training graph: the first IPO step of smoke run J on the H200 failed so
# (82-token rows, NoValidChoicesError; docs/BENCHMARKS.md "Smoke runs I–K"). Rows padded to whole blocks cannot hit
# it, and whole blocks also leave flex fewer distinct shapes to compile.
FLEX_BLOCK_TOKENS = 128


def flex_pad_multiple(model) -> int | None:
    """FLEX_BLOCK_TOKENS when the model attends with flex_attention (CUDA), else None (no padding needed)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return FLEX_BLOCK_TOKENS if impl == "flex_attention" else None


def raise_flex_recompile_limit(limit: int = FLEX_RECOMPILE_LIMIT) -> None:
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.6
    setattr(config, name, max(getattr(config, name), limit))


def build_meta_model(config_or_path):
    """A model with no storage (meta device): exact parameter shapes and counts of any size, in seconds."""
    import torch
    from transformers import AutoModelForCausalLM

    config = load_config(config_or_path) if isinstance(config_or_path, str | os.PathLike) else config_or_path
    if getattr(config, "quantization_config", None):
        config = type(config).from_dict({k: v for k, v in config.to_dict().items() if k != "quantization_config"})
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
