"""Write a GPT-OSS model in the released checkpoint's file layout: MXFP4 experts as ``*_blocks`` / ``*_scales``.

    from pipeline_lib.mxfp4 import save_released_layout
    save_released_layout(model, "checkpoints/gpt-oss-2l-mxfp4")   # shards + index + config with quantization_config

openai/gpt-oss-20b ships its experts in MXFP4 (OCP microscaling: 32 FP4 E2M1 values share one E8M0 power-of-two
scale) and everything else in bf16. Per layer the tensors are named as in its model.safetensors.index.json:
``model.layers.N.mlp.experts.{gate_up_proj,down_proj}_{blocks,scales,bias}`` and config.json carries
``quantization_config: {quant_method: mxfp4, modules_to_not_convert: [...]}`` (copied here from
configs/gpt-oss-20b/config.json). A model written this way is loaded through the same path as the released one:
transformers' Mxfp4 quantizer, which dequantizes to bf16 on load when it cannot run MXFP4 natively (no ``kernels``
package, or CPU) and always when asked with ``Mxfp4Config(dequantize=True)`` (what pipeline_lib.modeling does).

Layout, read from transformers 5.17's ``integrations/mxfp4.py`` (``_convert_moe_packed_tensors``): for a
transformers parameter ``W`` of shape [experts, in, out] (gate_up_proj: [E, hidden, 2*intermediate], down_proj:
[E, intermediate, hidden]) the checkpoint stores ``blocks`` uint8 [E, out, in/32, 16] and ``scales`` uint8
[E, out, in/32]: value = FP4_VALUES[nibble] * 2**(scale - 127), the low nibble holding the even element. The
quantizer here is written from that description, and tests/test_mxfp4.py checks that transformers loads exactly the
values it meant (and that a corrupted scale shows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipeline_lib.provenance import REPO_ROOT

# E2M1 code points 0..15 (sign bit 3): the table transformers and the gpt-oss reference code decode with.
FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
GROUP = 32  # values per shared scale (OCP MX)
SCALE_BIAS = 127  # E8M0 exponent bias
FP4_EMAX = 2  # largest E2M1 magnitude is 6 = 1.5 * 2**2
EXPERT_TENSORS = ("gate_up_proj", "down_proj")
RELEASED_CONFIG = REPO_ROOT / "configs" / "gpt-oss-20b" / "config.json"


def quantize_mxfp4(weight: Any) -> tuple[Any, Any]:
    """[E, in, out] float tensor -> (blocks uint8 [E, out, in/32, 16], scales uint8 [E, out, in/32]).

    Per OCP MX: the group's scale is 2**(floor(log2(amax)) - 2), so the largest magnitude lands in [4, 8) and
    rounds to at most 6; each value is rounded to the nearest E2M1 code point."""
    import torch

    experts, n_in, n_out = weight.shape
    if n_in % GROUP:
        raise ValueError(f"MXFP4 needs the input dimension to be a multiple of {GROUP}, got {n_in}")
    magnitudes = torch.tensor(FP4_VALUES[:8], device=weight.device)
    blocks, scales = [], []
    for expert in weight.detach():  # one expert at a time: the nearest-code search holds 8 floats per value
        w = expert.float().t().reshape(n_out, n_in // GROUP, GROUP)
        amax = w.abs().amax(-1, keepdim=True)
        exponent = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-38))) - FP4_EMAX,
                               torch.full_like(amax, -SCALE_BIAS)).clamp(-SCALE_BIAS, SCALE_BIAS)
        scaled = (w / torch.exp2(exponent)).clamp(-6.0, 6.0)
        code = (scaled.abs().unsqueeze(-1) - magnitudes).abs().argmin(-1)  # nearest magnitude, 0..7
        code = (code + 8 * (scaled < 0)).to(torch.uint8)
        blocks.append(code[..., 0::2] | (code[..., 1::2] << 4))
        scales.append((exponent.squeeze(-1) + SCALE_BIAS).to(torch.uint8))
    return torch.stack(blocks).contiguous(), torch.stack(scales).contiguous()


def dequantize_mxfp4(blocks: Any, scales: Any, dtype: Any = None) -> Any:
    """The inverse layout: (blocks, scales) -> [E, in, out] (float32 unless ``dtype``)."""
    import torch

    lut = torch.tensor(FP4_VALUES, device=blocks.device)
    out = []
    for block, scale in zip(blocks, scales, strict=True):  # per expert: the int64 codes are 16x the packed bytes
        codes = torch.stack([block & 0x0F, block >> 4], dim=-1).long()  # [out, G, 16, 2]: low nibble first
        values = lut[codes].reshape(*block.shape[:-1], block.shape[-1] * 2)  # [out, G, 32]
        values = values * torch.exp2(scale.float() - SCALE_BIAS).unsqueeze(-1)
        out.append(values.reshape(block.shape[0], -1).t().to(dtype or torch.float32))
    return torch.stack(out).contiguous()


def released_quantization_config(path: str | os.PathLike = RELEASED_CONFIG) -> dict[str, Any]:
    return json.loads(Path(path).read_text())["quantization_config"]


def released_state_dict(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A transformers GPT-OSS state dict -> (the released layout's tensors, the dequantized experts it encodes).

    Expert weights become ``<name>_blocks`` / ``<name>_scales`` (uint8); biases and every other tensor are kept
    as they are. The second dict maps each expert weight name to ``dequantize_mxfp4`` of what was written: what a
    correct loader must produce."""
    out: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    for name, tensor in state.items():
        if name.rsplit(".", 1)[-1] in EXPERT_TENSORS and tensor.ndim == 3:
            blocks, scales = quantize_mxfp4(tensor)
            out[f"{name}_blocks"], out[f"{name}_scales"] = blocks.cpu(), scales.cpu()
            reference[name] = dequantize_mxfp4(blocks, scales, tensor.dtype).cpu()
        else:
            out[name] = tensor.detach().contiguous().cpu()
    if not reference:
        raise ValueError("no 3-D expert tensors (mlp.experts.gate_up_proj / down_proj) in the state dict")
    return out, reference


def save_released_layout(model: Any, out_dir: str | os.PathLike, *, max_shard_bytes: int = 4 << 30,
                         quantization_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save ``model`` (a GptOssForCausalLM) as shards ``model-0000i-of-0000n.safetensors`` + index, with the
    released ``quantization_config`` in config.json. Returns the dequantized expert tensors (CPU) it encodes."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, reference = released_state_dict(model.state_dict())
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, filename))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    config = model.config.to_dict()
    config["quantization_config"] = quantization_config or released_quantization_config()
    config.pop("dtype", None)
    config["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(out))
    return reference


def expert_tensor_names(folder: str | os.PathLike) -> list[str]:
    """The ``*_blocks`` / ``*_scales`` names in a folder's safetensors index (empty for a plain bf16 folder)."""
    index = Path(folder) / "model.safetensors.index.json"
    if not index.is_file():
        return []
    names = json.loads(index.read_text())["weight_map"]
    return sorted(n for n in names if n.endswith(("_blocks", "_scales")))


def verify_released_load(folder: str | os.PathLike, model: Any) -> dict[str, Any]:
    """Each expert tensor of a loaded ``model`` vs ``dequantize_mxfp4`` of the ``*_blocks``/``*_scales`` in
    ``folder``'s shards (our decoder, not transformers'): the loader must reproduce them exactly."""
    import torch
    from safetensors import safe_open

    folder = Path(folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    params = dict(model.named_parameters())
    checked, mismatched, max_diff = 0, [], 0.0
    for blocks_name in sorted(n for n in index if n.endswith("_blocks")):
        name = blocks_name.removesuffix("_blocks")
        scales_name = f"{name}_scales"
        param = params.get(name)
        if param is None:
            param = next((p for n, p in params.items() if n.endswith(name) and "lora_" not in n), None)
        if param is None:
            mismatched.append(f"{name}: not a parameter of the loaded model")
            continue
        with safe_open(str(folder / index[blocks_name]), framework="pt") as fh:
            blocks = fh.get_tensor(blocks_name).to(param.device)
        with safe_open(str(folder / index[scales_name]), framework="pt") as fh:
            scales = fh.get_tensor(scales_name).to(param.device)
        expected = dequantize_mxfp4(blocks, scales, torch.float32)
        diff = float((param.detach().float() - expected).abs().max())
        max_diff = max(max_diff, diff)
        checked += 1
        if diff != 0.0:
            mismatched.append(f"{name}: max |d| {diff:.3g}")
    return {"passed": checked > 0 and not mismatched, "expert_tensors_checked": checked,
            "max_abs_diff": max_diff, "mismatched": mismatched[:10]}
