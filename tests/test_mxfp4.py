"""The released checkpoint's layout (MXFP4 experts as *_blocks/*_scales): what we write is what transformers loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib.mxfp4 import (
    FP4_VALUES,
    dequantize_mxfp4,
    expert_tensor_names,
    quantize_mxfp4,
    save_released_layout,
)

# Layer 0 of openai/gpt-oss-20b's model.safetensors.index.json (read 2026-11), plus the top-level tensors.
RELEASED_NAMES = sorted([
    "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight",
    "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
    "model.layers.0.mlp.experts.down_proj_bias", "model.layers.0.mlp.experts.down_proj_blocks",
    "model.layers.0.mlp.experts.down_proj_scales", "model.layers.0.mlp.experts.gate_up_proj_bias",
    "model.layers.0.mlp.experts.gate_up_proj_blocks", "model.layers.0.mlp.experts.gate_up_proj_scales",
    "model.layers.0.mlp.router.bias", "model.layers.0.mlp.router.weight",
    "model.layers.0.self_attn.k_proj.bias", "model.layers.0.self_attn.k_proj.weight",
    "model.layers.0.self_attn.o_proj.bias", "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.sinks",
    "model.layers.0.self_attn.v_proj.bias", "model.layers.0.self_attn.v_proj.weight",
])


@pytest.fixture(scope="module")
def released(tiny_model_dir: Path, tmp_path_factory) -> tuple[Path, dict, object]:
    import torch
    from transformers import GptOssForCausalLM

    model = GptOssForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    out = tmp_path_factory.mktemp("released") / "model"
    reference = save_released_layout(model, out)
    return out, reference, model


def test_quantize_is_exact_on_representable_values() -> None:
    import torch

    torch.manual_seed(0)
    codes = torch.randint(0, 16, (2, 64, 8))
    exponents = torch.randint(-6, 3, (2, 1, 8)).float()
    weight = torch.tensor(FP4_VALUES)[codes] * torch.exp2(exponents)  # [E, in, out], every value E2M1 x 2**k
    weight[:, 0, :] = 6.0 * torch.exp2(exponents[:, 0, :])  # each group's max sets its scale exactly
    blocks, scales = quantize_mxfp4(weight)
    assert blocks.shape == (2, 8, 2, 16) and scales.shape == (2, 8, 2) and blocks.dtype == torch.uint8
    assert torch.equal(dequantize_mxfp4(blocks, scales), weight)


def test_names_and_config_match_the_released_layout(released) -> None:
    folder, _, _ = released
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    names = sorted(n for n in index["weight_map"] if "layers." not in n or "layers.0." in n)
    assert names == RELEASED_NAMES
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    assert "model.layers.*.self_attn" in config["quantization_config"]["modules_to_not_convert"]
    assert len(expert_tensor_names(folder)) == 2 * 2 * config["num_hidden_layers"]


def test_transformers_loads_exactly_the_encoded_values(released) -> None:
    """pipeline_lib.modeling.load_causal_lm (the path every phase uses) dequantizes to the values we encoded;
    every non-expert tensor is the original; the logits equal the original model with the dequantized experts."""
    import torch

    from pipeline_lib.modeling import load_causal_lm

    folder, reference, original = released
    loaded = load_causal_lm(folder)
    params = dict(loaded.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.float32}  # one dtype after the cast in load_causal_lm
    for name, tensor in original.state_dict().items():
        expected = reference.get(name, tensor)
        assert torch.equal(params[name].detach(), expected.float()), name
    assert any(not torch.equal(reference[n].float(), original.state_dict()[n].float()) for n in reference)

    original = original.float()
    with torch.no_grad():
        for name, value in reference.items():
            original.get_parameter(name).copy_(value.float())
        ids = torch.tensor([[200006, 17360, 200008, 3575, 553, 261, 10297, 200007]])
        assert torch.equal(loaded(input_ids=ids).logits, original(input_ids=ids).logits)


def test_negative_control_corrupted_scale_differs(released, tmp_path: Path) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from pipeline_lib.modeling import load_causal_lm

    folder, reference, _ = released
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shard = next(broken.glob("*.safetensors"))
    tensors = load_file(str(shard))
    key = "model.layers.1.mlp.experts.down_proj_scales"
    tensors[key][0, 3, 1] += 1  # one group of 32 values doubles
    save_file(tensors, str(shard), metadata={"format": "pt"})
    loaded = dict(load_causal_lm(broken).named_parameters())["model.layers.1.mlp.experts.down_proj"].detach()
    expected = reference["model.layers.1.mlp.experts.down_proj"].float()
    differs = (loaded != expected).nonzero()
    assert len(differs) > 0
    # [E, in, out]: expert 0, output 3, inputs 32..63 (group 1) and nothing else
    assert set(differs[:, 0].tolist()) == {0} and set(differs[:, 2].tolist()) == {3}
    assert set(differs[:, 1].tolist()) <= set(range(32, 64))
    group = (slice(0, 1), slice(32, 64), slice(3, 4))
    assert torch.equal(loaded[group], 2 * expected[group])


def test_verify_released_load_passes_and_catches_a_wrong_expert(released) -> None:
    import torch

    from pipeline_lib.modeling import load_causal_lm
    from pipeline_lib.mxfp4 import verify_released_load

    folder, _, _ = released
    loaded = load_causal_lm(folder)
    good = verify_released_load(folder, loaded)
    assert good["passed"] and good["expert_tensors_checked"] == 4 and good["max_abs_diff"] == 0.0, good
    with torch.no_grad():
        loaded.model.layers[0].mlp.experts.gate_up_proj[1, 5, 7] += 0.5
    bad = verify_released_load(folder, loaded)
    assert not bad["passed"] and bad["max_abs_diff"] == 0.5
    assert bad["mismatched"][0].startswith("model.layers.0.mlp.experts.gate_up_proj")


def test_a_model_loaded_from_mxfp4_saves_its_experts(released, tmp_path: Path) -> None:
    """save_pretrained after load_causal_lm writes every tensor under its own name (the merge saves this way).
    Control: the same load without forget_mxfp4_conversion writes 'gate_up_proj$' / 'down_proj$' and no experts
    (transformers 5.17's reverse of its MXFP4 dequantize)."""
    import torch
    from safetensors import safe_open

    from pipeline_lib import modeling

    def saved_keys(model, folder: Path) -> set[str]:
        model.save_pretrained(str(folder), safe_serialization=True)
        keys: set[str] = set()
        for shard in folder.glob("*.safetensors"):
            with safe_open(str(shard), framework="pt") as fh:
                keys |= set(fh.keys())
        return keys

    folder, reference, _ = released
    loaded = modeling.load_causal_lm(folder)
    keys = saved_keys(loaded, tmp_path / "fixed")
    assert keys == set(loaded.state_dict())
    with safe_open(str(next((tmp_path / "fixed").glob("*.safetensors"))), framework="pt") as fh:
        name = "model.layers.0.mlp.experts.gate_up_proj"
        assert torch.equal(fh.get_tensor(name).float(), reference[name].float())

    original = modeling.forget_mxfp4_conversion
    try:
        modeling.forget_mxfp4_conversion = lambda model: 0
        broken = saved_keys(modeling.load_causal_lm(folder), tmp_path / "upstream")
    finally:
        modeling.forget_mxfp4_conversion = original
    assert "model.layers.0.mlp.experts.gate_up_proj" not in broken and {"gate_up_proj$", "down_proj$"} <= broken


def test_is_mxfp4_checkpoint_tells_the_released_layout_from_bf16(released, tiny_model_dir: Path) -> None:
    """The unsloth backend dequantizes exactly the folders this says are MXFP4 (control: the bf16 tiny model)."""
    from pipeline_lib.unsloth_utils import is_mxfp4_checkpoint

    folder, _, _ = released
    assert is_mxfp4_checkpoint(folder)
    assert not is_mxfp4_checkpoint(tiny_model_dir)


def test_backend_on_a_released_checkpoint_is_fast_and_unsloth_is_refused(released, tiny_model_dir: Path,
                                                                         monkeypatch) -> None:
    """auto never picks Unsloth on MXFP4 (its adapter from it did not reproduce through PEFT on the H200): fast on
    CUDA, hf on CPU; an explicit unsloth is refused with the reason; a bf16 folder is untouched (control: auto
    resolves as before)."""
    from pipeline_lib import unsloth_utils
    from pipeline_lib.unsloth_utils import resolve_backend

    folder, _, _ = released
    if not unsloth_utils.cuda_available():
        assert resolve_backend("auto", model=folder) == "hf"
    monkeypatch.setattr(unsloth_utils, "cuda_available", lambda: True)
    monkeypatch.setattr(unsloth_utils, "unsloth_available", lambda: True)
    assert resolve_backend("auto", model=folder) == "fast"
    assert resolve_backend("auto", model="openai/gpt-oss-20b") == "fast"
    assert resolve_backend("auto", model=tiny_model_dir) == "unsloth"  # control: the bf16 folder, unpacked
    with pytest.raises(RuntimeError, match="MXFP4: pass --backend hf or fast"):
        resolve_backend("unsloth", model=folder)
    assert resolve_backend("fast", model=folder) == "fast"
    assert resolve_backend("auto", model=tiny_model_dir) == resolve_backend("auto")
