"""The embedded tiny GPT-OSS: real architecture class and structure, real tokenizer, loads with Auto* classes."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline_lib.tiny_model import TinyGptOssSpec, build_tiny_gpt_oss
from pipeline_lib.tokenizer import GENERATION_EOS_IDS, MODEL_VOCAB_SIZE


def test_tiny_model_loads_with_auto_classes(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "GptOssForCausalLM"
    cfg = model.config
    assert cfg.model_type == "gpt_oss" and cfg.vocab_size == MODEL_VOCAB_SIZE
    # The structure gpt-oss-20b has, at tiny sizes.
    assert cfg.layer_types == ["sliding_attention", "full_attention"]
    assert cfg.rope_parameters["rope_type"] == "yarn" and cfg.rope_parameters["factor"] == 32.0
    assert cfg.num_local_experts == 4 and cfg.num_experts_per_tok == 2 and cfg.attention_bias
    layer = model.model.layers[0]
    assert layer.self_attn.sinks.abs().sum() > 0, "sinks must be non-zero so a GGUF that drops them shows up"
    assert layer.mlp.experts.gate_up_proj.shape == (4, 64, 128)  # fused, interleaved gate/up
    assert layer.self_attn.q_proj.bias is not None
    assert model.generation_config.eos_token_id == GENERATION_EOS_IDS
    assert tokenizer.convert_tokens_to_ids("<|return|>") == 200002 and tokenizer.pad_token_id == 199999
    ids = tokenizer("<|start|>user<|message|>hi<|end|>", return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    assert abs(loss.item() - torch.log(torch.tensor(float(MODEL_VOCAB_SIZE))).item()) < 1.0  # random init ~ ln V


def test_tiny_model_build_is_deterministic_and_idempotent(tmp_path, tiny_model_dir):
    spec = TinyGptOssSpec()
    out = build_tiny_gpt_oss(tmp_path / "a", spec)
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_gpt_oss(tmp_path / "a", spec) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime, "second build must reuse the folder"
    a = AutoModelForCausalLM.from_pretrained(out).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed must give the same weights"
    other = build_tiny_gpt_oss(tmp_path / "b", TinyGptOssSpec(seed=spec.seed + 1))
    c = AutoModelForCausalLM.from_pretrained(other).state_dict()
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"]), "negative control: another seed differs"
    assert json.loads((out / "tiny_model.json").read_text())["parameters"] == sum(v.numel() for v in a.values())


def test_tests_build_the_tiny_model_outside_the_repository(tiny_model_dir, repo_root):
    """`make demo` uses checkpoints/tiny-gpt-oss; the test session builds its own copy in a temp folder."""
    assert not tiny_model_dir.resolve().is_relative_to(repo_root.resolve())
    assert (tiny_model_dir / "config.json").is_file() and tiny_model_dir.name == "tiny-gpt-oss"
