"""probes.float32_forward: the reference forward of the merge check and the GGUF validation on CUDA, where the
weights stay bf16 (fp32 weights of the 20B would not fit an 80 GB card) but a bf16 forward flips top-4 routing."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipeline_lib.probes import float32_forward, harmony_probe_ids, logits_agreement, probe_logits

torch = pytest.importorskip("torch")


def _bf16_model(model_dir: Path):
    from pipeline_lib.modeling import Precision, load_causal_lm

    return load_causal_lm(model_dir, Precision("cpu", True, "bfloat16", "eager", None)).eval()


def test_float32_forward_equals_the_fp32_model_of_the_same_weights(tiny_model_dir: Path) -> None:
    probes = harmony_probe_ids()
    model = _bf16_model(tiny_model_dir)
    reference = probe_logits(copy.deepcopy(model).float(), probes)  # the bf16 values, held and computed in fp32
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    upcast = logits_agreement(reference, probe_logits(model, probes, float32=True))
    # Negative control: the plain bf16 forward of the same model is measurably off the reference.
    plain = logits_agreement(reference, probe_logits(model, probes))
    assert upcast["rel_max_abs_diff"] < 1e-4, upcast
    assert plain["rel_max_abs_diff"] > 100 * max(upcast["rel_max_abs_diff"], 1e-6), (plain, upcast)

    after = model.state_dict()  # every weight back in bf16, bit for bit
    assert {str(t.dtype) for t in after.values() if t.is_floating_point()} == {"torch.bfloat16"}
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_float32_forward_keeps_fp32_lora_weights_and_restores_after_an_error(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    probes = harmony_probe_ids()
    torch.manual_seed(0)
    peft_model = get_peft_model(_bf16_model(tiny_model_dir), LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
        target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])).eval()
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    lora = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    assert lora and {str(t.dtype) for t in lora.values()} == {"torch.float32"}  # PEFT keeps LoRA in fp32

    reference = probe_logits(copy.deepcopy(peft_model).float(), probes)
    assert logits_agreement(reference, probe_logits(peft_model, probes, float32=True))["rel_max_abs_diff"] < 1e-4
    for name, param in peft_model.named_parameters():
        if "lora_" in name:  # not rounded through bf16 on the way back
            assert param.dtype == torch.float32 and torch.equal(param, lora[name]), name

    config = peft_model.base_model.model.config
    attn, experts = config._attn_implementation, getattr(config, "_experts_implementation", None)
    layer = next(m for m in peft_model.modules() if type(m).__name__.endswith("DecoderLayer"))

    def fail(module, args):
        raise RuntimeError("boom")

    handle = layer.mlp.register_forward_pre_hook(fail)  # raises inside an upcast layer
    with pytest.raises(RuntimeError, match="boom"), float32_forward(peft_model):
        peft_model(input_ids=torch.tensor([probes[0]]))
    handle.remove()
    dtypes = {str(p.dtype) for n, p in peft_model.named_parameters() if "lora_" not in n}
    assert dtypes == {"torch.bfloat16"}, dtypes
    assert (config._attn_implementation, getattr(config, "_experts_implementation", None)) == (attn, experts)


def test_float32_forward_is_a_no_op_on_an_fp32_model(tiny_model_dir: Path) -> None:
    from pipeline_lib.modeling import Precision, load_causal_lm

    model = load_causal_lm(tiny_model_dir, Precision("cpu", False, "float32", "eager", None)).eval()
    probes = harmony_probe_ids()
    assert torch.equal(probe_logits(model, probes), probe_logits(model, probes, float32=True))


def test_float32_forward_runs_eager_experts_and_restores_grouped_mm(tiny_model_dir: Path) -> None:
    """The CUDA loaders ask for grouped_mm experts (a bf16 path); inside float32_forward the experts run eager."""
    from pipeline_lib.modeling import Precision, load_causal_lm
    from pipeline_lib.probes import eager_attention

    model = load_causal_lm(tiny_model_dir, Precision("cpu", True, "bfloat16", "eager", "grouped_mm")).eval()
    seen: list[str] = []
    layer = next(m for m in model.modules() if type(m).__name__.endswith("DecoderLayer"))
    layer.register_forward_hook(lambda module, args, output: seen.append(model.config._experts_implementation))
    probes = harmony_probe_ids()[:1]
    probe_logits(model, probes, float32=True)
    with eager_attention(model):  # control: attention only, the experts keep grouped_mm
        probe_logits(model, probes)
    assert seen == ["eager", "grouped_mm"], seen
    assert model.config._experts_implementation == "grouped_mm"


def test_reference_precision_bench_runs_and_tells_a_dropped_merge(tiny_model_dir: Path, tmp_path: Path,
                                                                  repo_root: Path) -> None:
    """scripts/bench_reference_precision.py (the GPU measurement of docs/BENCHMARKS.md "Reference precision") on the
    tiny model: the correct merge agrees, the expert-dropped control does not (fp32 on the CPU)."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_reference_precision",
                                                  repo_root / "scripts" / "bench_reference_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "report.json"
    assert bench.main(["--model", str(tiny_model_dir), "--workdir", str(tmp_path / "w"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    correct, dropped = (report["merge"][case]["float32_forward"] for case in ("correct", "experts_dropped"))
    assert correct["merged_vs_adapter_rel_p90"] < 1e-4 < 0.5 < dropped["merged_vs_adapter_rel_p90"], report["merge"]
    assert report["forward"]["float32_forward_vs_fp32_model"]["rel_max_abs_diff"] < 1e-4
    assert report["loads_differ"] == []
