"""A tiny GPT-OSS: the real architecture class and tokenizer with random weights, for CPU runs and tests.

Every structural feature of gpt-oss-20b is kept (attention sinks, sliding/full layer alternation, YaRN rope,
biased q/k/v/o, experts with top-k routing and fused, interleaved gate_up, swiglu clamp, vocab 201,088); only the
sizes shrink. With hidden 64, 2 layers and 4 experts top-2 it has ~25.9M parameters, almost all of them in the
201,088-row embedding and lm_head.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline_lib.tokenizer import GENERATION_EOS_IDS, MODEL_VOCAB_SIZE, save_gpt_oss_tokenizer


@dataclass(frozen=True)
class TinyGptOssSpec:
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    intermediate_size: int = 64
    num_local_experts: int = 4
    num_experts_per_tok: int = 2
    sliding_window: int = 32  # 128 on the real model; smaller so tiny sequences exercise the window
    max_position_embeddings: int = 8192  # = 256 original positions x YaRN factor 32
    seed: int = 1234


def tiny_gpt_oss_config(spec: TinyGptOssSpec = TinyGptOssSpec()):
    from transformers import GptOssConfig

    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(spec.num_hidden_layers)]
    return GptOssConfig(
        vocab_size=MODEL_VOCAB_SIZE,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        num_local_experts=spec.num_local_experts,
        num_experts_per_tok=spec.num_experts_per_tok,
        experts_per_token=spec.num_experts_per_tok,
        sliding_window=spec.sliding_window,
        layer_types=layer_types,
        max_position_embeddings=spec.max_position_embeddings,
        initial_context_length=256,
        rope_theta=150000.0,
        rope_scaling={
            "rope_type": "yarn",
            "factor": 32.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "original_max_position_embeddings": 256,
            "truncate": False,
        },
        attention_bias=True,
        swiglu_limit=7.0,
        router_aux_loss_coef=0.9,
        output_router_logits=False,
        tie_word_embeddings=False,
        pad_token_id=199999,
        bos_token_id=199998,
        eos_token_id=200002,
    )


def build_tiny_gpt_oss(
    out_dir: str | os.PathLike, spec: TinyGptOssSpec = TinyGptOssSpec(), *, force: bool = False
) -> Path:
    """Build, save (safetensors, fp32) and return the tiny model folder, with tokenizer and chat template."""
    import torch
    from transformers import GenerationConfig, GptOssForCausalLM

    out = Path(out_dir)
    marker = out / "tiny_model.json"
    if marker.is_file() and not force:
        if json.loads(marker.read_text()).get("spec") == asdict(spec):
            return out
    torch.manual_seed(spec.seed)
    config = tiny_gpt_oss_config(spec)
    model = GptOssForCausalLM(config)
    # Random sinks (zeros by default) so a llama.cpp mapping that drops them shows up in the logits check.
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 1.0)
    model.generation_config = GenerationConfig(
        bos_token_id=199998, eos_token_id=GENERATION_EOS_IDS, pad_token_id=199999, do_sample=False
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_gpt_oss_tokenizer(out, model_max_length=spec.max_position_embeddings)
    n_params = sum(p.numel() for p in model.parameters())
    marker.write_text(json.dumps({"spec": asdict(spec), "parameters": n_params,
                                  "made_by": "pipeline_lib.tiny_model.build_tiny_gpt_oss"}, indent=2) + "\n")
    return out
