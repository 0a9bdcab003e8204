"""LoRA on GPT-OSS: exact trainable counts on the 20B config, and every adapter tensor (experts too) really trains."""

from __future__ import annotations

import pytest
import torch

from pipeline_lib.unsloth_utils import (
    apply_lora_config,
    count_lora_trainable,
    is_moe,
    resolve_backend,
    snapshot_parameters,
    trainable_report,
    verify_lora_updates,
)

GPT_OSS_20B = "configs/gpt-oss-20b/config.json"


@pytest.mark.parametrize("r, include_experts, expected", [
    (64, True, 739_639_296),     # writeup "~739M"
    (128, True, 1_479_278_592),  # writeup "~1.48B"
    (64, False, 31_850_496),     # attention only: writeup "~31.8M" (what Unsloth #3405 silently trained)
])
def test_trainable_counts_gpt_oss_20b(repo_root, r, include_experts, expected):
    assert count_lora_trainable(repo_root / GPT_OSS_20B, r, include_experts=include_experts) == expected


def test_resolve_backend_on_cpu():
    assert resolve_backend("hf") == "hf"
    if not torch.cuda.is_available():
        assert resolve_backend("auto") == "hf"
        with pytest.raises(RuntimeError, match="--backend unsloth needs a CUDA GPU"):
            resolve_backend("unsloth")
    with pytest.raises(ValueError, match="--backend"):
        resolve_backend("vllm")


def test_auto_backend_rule_and_reasons():
    """Every branch of the rule 'auto' follows (phases, import_unsloth_first and the estimate share it), with a
    reason that names its measurement; the CPU keeps stock PEFT whatever else holds."""
    from pipeline_lib.unsloth_utils import auto_backend

    def pick(**kw):
        return auto_backend(**{"cuda": True, "unsloth": True, **kw})[0]

    assert pick() == "unsloth"                       # Phase 1 unpacked: Unsloth 1.27x the fast path
    assert pick(packing=True) == "fast"              # Phase 2 packed: Unsloth would train it unpacked
    assert pick(mxfp4=True) == "fast"                # the released checkpoint: Unsloth refused
    assert pick(unsloth=False) == "fast"             # no Unsloth: fast 1.66x stock
    assert pick(load_in_4bit=True, packing=True) == "unsloth"  # QLoRA exists on Unsloth only
    for kw in ({}, {"packing": True}, {"mxfp4": True}, {"unsloth": False}, {"load_in_4bit": True}):
        assert auto_backend(**{"cuda": False, "unsloth": True, **kw})[0] == "hf"
    for kw in ({}, {"packing": True}, {"mxfp4": True}, {"unsloth": False}):
        assert "docs/BENCHMARKS.md" in auto_backend(**{"cuda": True, "unsloth": True, **kw})[1]


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has (or lacks) CUDA and unsloth: choose_backend asks unsloth_utils for both."""
    from pipeline_lib import unsloth_utils

    def set_machine(cuda: bool, unsloth: bool) -> None:
        monkeypatch.setattr(unsloth_utils, "cuda_available", lambda: cuda)
        monkeypatch.setattr(unsloth_utils, "unsloth_available", lambda: unsloth)

    return set_machine


def test_choose_backend_on_a_gpu_machine(machine, tiny_model_dir):
    from pipeline_lib.unsloth_utils import choose_backend

    machine(cuda=True, unsloth=True)
    assert choose_backend("auto", tiny_model_dir, packing=True)[0] == "fast"
    assert choose_backend("auto", tiny_model_dir, packing=False)[0] == "unsloth"
    assert choose_backend("unsloth", tiny_model_dir, packing=True) == ("unsloth", "--backend unsloth")
    assert choose_backend("hf", tiny_model_dir, packing=True) == ("hf", "--backend hf")
    machine(cuda=True, unsloth=False)
    assert choose_backend("auto", tiny_model_dir)[0] == "fast"
    with pytest.raises(RuntimeError, match="needs the unsloth package"):
        choose_backend("auto", tiny_model_dir, load_in_4bit=True)
    with pytest.raises(RuntimeError, match="needs the unsloth package"):
        choose_backend("unsloth", tiny_model_dir)
    machine(cuda=False, unsloth=False)
    assert choose_backend("auto", tiny_model_dir, packing=True)[0] == "hf"


def test_phase_choice_reads_the_config_under_the_command_line(tmp_path):
    from pipeline_lib.unsloth_utils import phase_choice

    config = tmp_path / "phase.yaml"
    config.write_text("backend: auto\npacking: true\nmodel_name_or_path: openai/gpt-oss-20b\n")
    other = tmp_path / "other.yaml"
    other.write_text("backend: hf\npacking: false\nload_in_4bit: true\n")
    base = phase_choice([], config)
    assert base == {"backend": "auto", "model": "openai/gpt-oss-20b", "packing": True, "load_in_4bit": False}
    assert phase_choice(["--no-packing"], config)["packing"] is False
    assert phase_choice(["--no_packing"], config)["packing"] is False
    assert phase_choice(["--packing", "false"], config)["packing"] is False
    assert phase_choice(["--packing=False", "--backend=fast"], config)["backend"] == "fast"
    assert phase_choice(["--packing", "--backend", "unsloth"], other) == {
        "backend": "unsloth", "model": None, "packing": True, "load_in_4bit": True}
    assert phase_choice(["--config", str(other), "--base_model", "/m"], config) == {
        "backend": "hf", "model": "/m", "packing": False, "load_in_4bit": True}
    assert phase_choice([], None)["backend"] == "auto"


def test_import_unsloth_first_only_when_the_phase_trains_on_it(machine, monkeypatch, tmp_path, tiny_model_dir):
    """Unsloth patches transformers/PEFT on import, which would change the fast and hf paths: it is imported only
    when the phase resolves to it (a stand-in module in sys.modules lets the import run on this machine)."""
    import sys
    import types

    from pipeline_lib.unsloth_utils import import_unsloth_first

    config = tmp_path / "phase.yaml"
    config.write_text(f"backend: auto\npacking: true\nbase_model: {tiny_model_dir}\n")
    machine(cuda=True, unsloth=True)

    def imported(argv):
        monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))
        return import_unsloth_first(argv, config)

    assert imported([]) is False                     # auto + packed rows -> fast
    assert imported(["--no-packing"]) is True        # auto + unpacked -> unsloth
    assert imported(["--backend", "fast", "--no-packing"]) is False
    assert imported(["--backend", "unsloth"]) is True
    machine(cuda=False, unsloth=True)
    assert imported(["--backend", "unsloth"]) is False  # the phase then says why it cannot run
    machine(cuda=True, unsloth=True)
    mxfp4 = tmp_path / "released"
    mxfp4.mkdir()
    (mxfp4 / "config.json").write_text('{"quantization_config": {"quant_method": "mxfp4"}}')
    assert imported(["--no-packing", "--base_model", str(mxfp4)]) is False  # auto: fast on the released layout
    assert imported(["--backend", "unsloth", "--base_model", str(mxfp4)]) is False  # refused there, by the phase


def lora_model(tiny_model_dir, *, include_experts=True):
    from pipeline_lib.modeling import detect_precision, load_causal_lm

    torch.manual_seed(0)
    base = load_causal_lm(tiny_model_dir, detect_precision())
    assert is_moe(base)
    return apply_lora_config(base, 4, include_experts=include_experts, backend="hf")


def train_steps(model, steps: int = 3) -> None:
    """A few real AdamW steps on the LoRA parameters (next-token loss on a fixed 2 x 24 batch)."""
    torch.manual_seed(1)
    batch = torch.randint(0, 199_000, (2, 24))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_every_lora_tensor_trains_and_no_base_weight_changes(tiny_model_dir):
    model = lora_model(tiny_model_dir)
    report = trainable_report(model)
    assert report["lora_experts"] > 0 and report["lora_attention"] > 0 and report["trainable_non_lora"] == 0
    before = snapshot_parameters(model)
    train_steps(model)
    check = verify_lora_updates(before, model)
    assert check["passed"], check["problems"]
    assert check["expert_lora_tensors"] == check["expert_lora_changed"] == 2 * 2 * 2  # 2 layers x 2 params x A/B
    assert check["attention_lora_tensors"] == check["attention_lora_changed"] == 2 * 4 * 2  # 2 layers x q/k/v/o x A/B
    assert check["base_changed"] == [] and check["base_check"] == "exact"


def test_experts_left_out_fails_the_check(tiny_model_dir):
    """Negative control: attention-only LoRA (the #3405 failure) must not pass as MoE LoRA."""
    model = lora_model(tiny_model_dir, include_experts=False)
    before = snapshot_parameters(model)
    train_steps(model)
    check = verify_lora_updates(before, model)
    assert not check["passed"] and not check["experts_trained"]
    assert check["expert_lora_tensors"] == 0 and check["attention_lora_changed"] == 16


def test_frozen_expert_lora_fails_the_check(tiny_model_dir):
    """Negative control: expert adapters exist but never train (#4193: they were frozen while logs claimed MoE)."""
    model = lora_model(tiny_model_dir)
    for name, param in model.named_parameters():
        if "lora_" in name and "experts" in name:
            param.requires_grad_(False)
    before = snapshot_parameters(model)
    train_steps(model)
    check = verify_lora_updates(before, model)
    assert not check["passed"] and check["expert_lora_tensors"] == 8 and check["expert_lora_changed"] == 0
    assert any("expert LoRA did not change" in p for p in check["problems"])


def test_changed_base_weight_fails_the_check(tiny_model_dir):
    """Negative control: a base weight that moved (e.g. unfrozen by mistake) is caught, exactly or by fingerprint."""
    model = lora_model(tiny_model_dir)
    exact, fingerprint = snapshot_parameters(model), snapshot_parameters(model, exact_limit=0)
    train_steps(model, steps=2)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("experts.base_layer.base_layer.gate_up_proj")
             or n.endswith("experts.gate_up_proj"))[0, 0, 0] += 1e-3
    for before in (exact, fingerprint):
        check = verify_lora_updates(before, model)
        assert not check["passed"] and len(check["base_changed"]) == 1 and "gate_up_proj" in check["base_changed"][0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_base_fingerprint_ignores_reduction_order_and_sees_one_ulp(dtype):
    """The large-model base check's fingerprint is an exact integer sum, so a tensor summed in another order (as a
    gathered FSDP2 shard on the GPU is, against a snapshot taken before sharding) gives the same answer; a float64
    sum did not (8 untouched tensors 'changed' on the H200). Controls: the old float64 sum of squares of the same
    data in another order differs, and one element moved by one ulp, or two elements swapped, change the
    fingerprint; a chunk that is not a multiple of the weight modulus is refused."""
    from pipeline_lib.unsloth_utils import _fingerprint

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3_000_001, generator=g) * torch.logspace(-3, 3, 3_000_001)).to(dtype)
    # other chunkings = other reduction orders (a GPU's tree reduction vs a CPU's cascade, in the real case)
    ref = _fingerprint(x)
    assert all(torch.equal(ref, _fingerprint(x, chunk=65_521 * k)) for k in (1, 3, 40))
    with pytest.raises(ValueError, match="multiple"):
        _fingerprint(x, chunk=1 << 20)
    # control: the old fingerprint's float64 sum of squares, same values in another order, is not bit-equal
    perm = torch.randperm(x.numel(), generator=g)
    assert x.double().pow(2).sum() != x.double()[perm].pow(2).sum()
    one_ulp = x.clone()
    one_ulp[12345] = torch.nextafter(one_ulp[12345], torch.tensor(float("inf"), dtype=dtype))
    assert not torch.equal(_fingerprint(x), _fingerprint(one_ulp))
    swapped = x.clone()
    swapped[[7, 2_000_000]] = x[[2_000_000, 7]]
    assert x[7] != x[2_000_000] and not torch.equal(_fingerprint(x), _fingerprint(swapped))


def test_is_moe_sees_packed_experts_and_not_dense_models() -> None:
    """A GPT-OSS whose experts are stored as 4-D uint8 MXFP4 blocks (as Unsloth keeps a released checkpoint) is
    still MoE: the old shape test ("3-D gate_up_proj") said no, so LoRA went on attention only with the experts
    check switched off. Control: a dense Llama is not MoE."""
    from transformers import GptOssConfig, GptOssForCausalLM, LlamaConfig, LlamaForCausalLM

    small = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32, vocab_size=128)
    with torch.device("meta"):
        moe = GptOssForCausalLM(GptOssConfig(**small, num_local_experts=4, num_experts_per_tok=2))
        dense = LlamaForCausalLM(LlamaConfig(**small))
    experts = moe.model.layers[0].mlp.experts
    experts.gate_up_proj = torch.nn.Parameter(torch.zeros(4, 128, 2, 16, dtype=torch.uint8, device="meta"),
                                              requires_grad=False)
    assert experts.gate_up_proj.ndim == 4 and is_moe(moe)
    moe.config.num_local_experts = 0  # the module name alone still tells
    assert is_moe(moe)
    assert not is_moe(dense)
