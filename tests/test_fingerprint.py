"""Adapter logits fingerprint: recorded by the process that trained, re-checked where PEFT loads the adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_merge import EXPERT_PARAMETERS  # tests/ is on sys.path; "tests." can hit gguf-py/tests (test_smoke.py)

from pipeline_lib.fingerprint import (
    FINGERPRINT_FILE,
    FINGERPRINT_JSON,
    FingerprintMismatch,
    describe,
    record_fingerprint,
    verify_fingerprint,
)


def _trained_like_adapter(base_dir: Path, out_dir: Path, dtype_name: str = "float32") -> Path:
    """A LoRA (attention + experts) with every delta non-zero, saved with the fingerprint its own process records."""
    import torch
    from peft import LoraConfig, get_peft_model

    from pipeline_lib.modeling import Precision, load_causal_lm

    torch.manual_seed(0)
    precision = Precision("cpu", dtype_name == "bfloat16", dtype_name, "eager", None)
    model = load_causal_lm(base_dir, precision)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        target_parameters=EXPERT_PARAMETERS)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    peft_model.train()  # as at the end of training: record_fingerprint must switch to eval and back
    peft_model.save_pretrained(str(out_dir))
    record_fingerprint(peft_model, out_dir, backend="hf")
    assert peft_model.training
    return out_dir


def _load(base_dir: Path, adapter_dir: Path, dtype_name: str = "float32"):
    from peft import PeftModel

    from pipeline_lib.modeling import Precision, load_causal_lm

    precision = Precision("cpu", dtype_name == "bfloat16", dtype_name, "eager", None)
    return PeftModel.from_pretrained(load_causal_lm(base_dir, precision), str(adapter_dir)).eval()


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return _trained_like_adapter(tiny_model_dir, tmp_path_factory.mktemp("fp") / "final")


def test_fingerprint_files_and_summary(adapter: Path) -> None:
    summary = json.loads((adapter / FINGERPRINT_JSON).read_text())
    assert (adapter / FINGERPRINT_FILE).is_file()
    assert summary["compute_dtype"] == "float32" and summary["backend"] == "hf" and summary["vocab"] == 201088
    assert summary["adapter_effect_rel"] > 0.1 and summary["noise_rel"] < 1e-5, summary


def test_plain_peft_reload_matches(tiny_model_dir: Path, adapter: Path) -> None:
    check = verify_fingerprint(_load(tiny_model_dir, adapter), adapter)
    assert check["passed"] and check["value"] < 1e-5 and check["argmax_agreement"] == 1.0, check
    assert check["discriminative"] and check["threshold"] == 1e-4


def test_negative_control_one_expert_tensor_zeroed(tiny_model_dir: Path, adapter: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(adapter, broken)
    weights = load_file(str(broken / "adapter_model.safetensors"))
    key = next(k for k in sorted(weights) if "experts" in k and "lora_B" in k)
    weights[key] = torch.zeros_like(weights[key])
    save_file(weights, str(broken / "adapter_model.safetensors"))
    model = _load(tiny_model_dir, broken)
    with pytest.raises(FingerprintMismatch, match="other logits than the training process"):
        verify_fingerprint(model, broken)
    check = verify_fingerprint(model, broken, strict=False)
    assert not check["passed"] and check["value"] > 10 * check["threshold"], (key, check)


def test_bf16_round_trip_passes_and_reports_its_noise(tiny_model_dir: Path, tmp_path: Path) -> None:
    """bf16 (the CUDA compute dtype) on the CPU: the same weights through a fresh PEFT load pass the bf16
    tolerance. CPU bf16 is deterministic per row (layout noise measured 0.0 here), so the floor rel_tol applies;
    on CUDA the measured noise term can raise it (the check reports both parts)."""
    folder = _trained_like_adapter(tiny_model_dir, tmp_path / "bf16", "bfloat16")
    check = verify_fingerprint(_load(tiny_model_dir, folder, "bfloat16"), folder)
    assert check["compute_dtype"] == "bfloat16" and check["passed"] and check["discriminative"], check
    # recorded by "hf" on the CPU, checked on the CPU: the same stack, so the tight same-stack floor applies
    assert check["same_stack"] and check["value"] < 0.01 and check["threshold"] == 0.02, check


def test_cross_stack_recordings_get_the_looser_tolerance(tiny_model_dir: Path, tmp_path: Path) -> None:
    """An adapter whose fingerprint was recorded by another stack (Unsloth) or device type gets max(0.1, 2 x noise)
    in bf16; the same recording marked as ours ("hf", cpu) gets 0.02. Control for same_stack: both directions."""
    from pipeline_lib.fingerprint import same_stack

    folder = _trained_like_adapter(tiny_model_dir, tmp_path / "bf16", "bfloat16")
    summary = json.loads((folder / FINGERPRINT_JSON).read_text())
    assert same_stack(summary, "cpu") and not same_stack(summary, "cuda:0")
    assert not same_stack({**summary, "backend": "unsloth"}, "cpu")
    (folder / FINGERPRINT_JSON).write_text(json.dumps({**summary, "backend": "unsloth"}))
    check = verify_fingerprint(_load(tiny_model_dir, folder, "bfloat16"), folder)
    parts = check["tolerance_parts"]
    assert not check["same_stack"] and set(parts) == {"rel_tol", "noise_term", "stack_term"}
    # the same weights on the same stack: the base logits agree, so the stack term adds nothing here
    assert check["base_rel_p90"] < 0.01 and check["threshold"] == max(0.1, parts["noise_term"]) and check["passed"]


def _as_unsloth_recording(folder: Path) -> dict:
    summary = json.loads((folder / FINGERPRINT_JSON).read_text())
    (folder / FINGERPRINT_JSON).write_text(json.dumps({**summary, "backend": "unsloth"}))
    return summary


def test_stack_term_follows_the_base_disagreement(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Cross-stack: the recorded BASE logits (adapter off) disagreeing with ours raise the tolerance to 2 x that
    disagreement's median (the adapter cannot cause it); the verdict is then reported as not discriminative when the
    adapter's effect is under 3 x the tolerance. Control: the untouched recording has base disagreement ~0."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = _trained_like_adapter(tiny_model_dir, tmp_path / "bf16", "bfloat16")
    _as_unsloth_recording(folder)
    tensors = load_file(str(folder / FINGERPRINT_FILE))
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(tensors["base"].shape, generator=generator) * tensors["base"].float().std(-1, keepdim=True)
    tensors["base"] = (tensors["base"].float() + noise).to(tensors["base"].dtype)
    save_file(tensors, str(folder / FINGERPRINT_FILE))
    check = verify_fingerprint(_load(tiny_model_dir, folder, "bfloat16"), folder, strict=False)
    assert check["statistic"] == "rel_median" and check["base_rel_median"] > 1.0
    assert check["tolerance_parts"]["stack_term"] == 2.0 * check["base_rel_median"]
    assert check["threshold"] == check["tolerance_parts"]["stack_term"] and check["passed"]
    assert not check["discriminative"] and "NOT discriminative" in describe(check)


def test_cross_stack_judges_the_median_position(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Across stacks, routing flips move a minority of positions a lot (H200: p90 0.64, median 0.058 for a correct
    adapter); a misread adapter moves every position. Recorded logits shifted by 3 std at 20% of the positions pass
    (p90 far out, median in); the same shift at every position fails. Same stack judges the p90: the 20% fails."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = _trained_like_adapter(tiny_model_dir, tmp_path / "bf16", "bfloat16")
    summary = _as_unsloth_recording(folder)
    clean = load_file(str(folder / FINGERPRINT_FILE))
    positions = clean["adapter"].shape[0]

    def shifted(rows: torch.Tensor) -> dict:
        tensors = dict(clean)
        adapter = tensors["adapter"].float().clone()
        adapter[rows] += 3.0 * adapter.std()
        tensors["adapter"] = adapter.to(clean["adapter"].dtype)
        save_file(tensors, str(folder / FINGERPRINT_FILE))
        return verify_fingerprint(_load(tiny_model_dir, folder, "bfloat16"), folder, strict=False)

    few = torch.arange(0, positions, 5)  # every 5th position: 20%
    check = shifted(few)
    assert check["statistic"] == "rel_median" and check["rel_p90"] > 1.0 and check["passed"], check
    check = shifted(torch.arange(positions))
    assert check["rel_median"] > 1.0 and not check["passed"], check
    (folder / FINGERPRINT_JSON).write_text(json.dumps(summary))  # recorded by "hf" on the CPU: same stack
    check = shifted(few)
    assert check["statistic"] == "rel_p90" and not check["passed"], check


def test_expert_part_is_measured_and_switched_back(tiny_model_dir: Path, adapter: Path, tmp_path: Path) -> None:
    """expert_effect: the loaded model with its expert LoRA switched off (scaling 0) against itself; the scaling
    comes back (the logits after equal those before). Control: an adapter whose expert lora_B are all zero has
    expert_effect 0 and is reported as not able to see the experts."""
    import torch
    from safetensors.torch import load_file, save_file

    from pipeline_lib.fingerprint import _expert_lora_off, _logits
    from pipeline_lib.probes import harmony_probe_ids

    model = _load(tiny_model_dir, adapter)
    before = _logits(model, harmony_probe_ids()[:1])
    with _expert_lora_off(model) as switched:
        off = _logits(model, harmony_probe_ids()[:1])
    assert switched == len(EXPERT_PARAMETERS) * model.config.num_hidden_layers
    assert torch.equal(_logits(model, harmony_probe_ids()[:1]), before) and not torch.equal(off, before)
    check = verify_fingerprint(model, adapter)
    assert check["expert_effect"] > 0.1 and check["discriminative_experts"], check

    no_experts = tmp_path / "no_experts"
    shutil.copytree(adapter, no_experts)
    weights = load_file(str(no_experts / "adapter_model.safetensors"))
    weights = {k: (torch.zeros_like(v) if "experts" in k and "lora_B" in k else v) for k, v in weights.items()}
    save_file(weights, str(no_experts / "adapter_model.safetensors"))
    check = verify_fingerprint(_load(tiny_model_dir, no_experts), no_experts, strict=False)
    assert check["expert_effect"] == 0.0 and check["discriminative_experts"] is False
    assert "experts' part 0, NOT discriminative" in describe(check)


def test_adapter_without_fingerprint_is_reported_not_passed(tiny_model_dir: Path, adapter: Path,
                                                            tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(adapter, bare)
    (bare / FINGERPRINT_FILE).unlink()
    check = verify_fingerprint(_load(tiny_model_dir, bare), bare)
    assert check["status"] == "not recorded" and "passed" not in check


def test_probes_run_eager_and_flex_is_restored(tiny_model_dir: Path) -> None:
    """A CUDA training model uses flex_attention; the probes switch it to eager (flex's eval compile failed on the
    H100) and back. Here the model is marked flex but only ever runs inside the switch (CPU has no flex kernel)."""
    from pipeline_lib.fingerprint import measure
    from pipeline_lib.modeling import load_causal_lm
    from pipeline_lib.probes import harmony_probe_ids

    model = load_causal_lm(tiny_model_dir)
    model.config._attn_implementation = "flex_attention"
    m = measure(model, harmony_probe_ids()[:1])  # no adapter: base == adapter, effect 0
    assert m["adapter_effect_rel"] == 0.0 and m["tensors"]["adapter"].shape == (m["positions"], 512)
    assert model.config._attn_implementation == "flex_attention"


def test_saved_adapter_holds_what_was_trained_with_controls(tiny_model_dir: Path, adapter: Path,
                                                            tmp_path: Path) -> None:
    """The saved-adapter check passes on a complete PEFT save and fails when the expert tensors are missing
    (what Unsloth wrote from a packed-MXFP4 model) or when any trained LoRA value is missing."""
    from safetensors.torch import load_file, save_file

    from pipeline_lib.fingerprint import ADAPTER_FILE, saved_adapter_problems

    model = _load(tiny_model_dir, adapter)
    for name, param in model.named_parameters():  # as in training: LoRA trainable, base frozen
        param.requires_grad_("lora_" in name)
    assert saved_adapter_problems(adapter, model) == []

    weights = load_file(str(adapter / ADAPTER_FILE))
    no_experts = tmp_path / "no_experts"
    no_experts.mkdir()
    save_file({k: v for k, v in weights.items() if "experts" not in k}, str(no_experts / ADAPTER_FILE))
    problems = saved_adapter_problems(no_experts, model)
    assert len(problems) == 2 and "holds no expert LoRA tensor" in problems[0], problems

    one_missing = tmp_path / "one_missing"
    one_missing.mkdir()
    dropped = next(k for k in sorted(weights) if "q_proj" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, str(one_missing / ADAPTER_FILE))
    problems = saved_adapter_problems(one_missing, model)
    assert len(problems) == 1 and "LoRA values" in problems[0], problems

    missing = tmp_path / "nowhere" / ADAPTER_FILE
    assert saved_adapter_problems(missing.parent, model) == [f"{missing} was not written"]


def test_fingerprint_ignores_accelerates_autocast_wrapper(tiny_model_dir: Path, adapter: Path) -> None:
    """A Trainer with bf16=True wraps model.forward in autocast (Accelerator.prepare_model); the fingerprint is
    taken through the model's own forward, so a plain PEFT reload matches it at fp32 tolerance. Control: the
    wrapped forward itself gives different logits (the mismatch the training process would have recorded)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from pipeline_lib.fingerprint import _logits, measure
    from pipeline_lib.merge import harmony_probe_ids

    model = _load(tiny_model_dir, adapter)
    plain = _logits(model, harmony_probe_ids()[:1])
    # accelerate keeps one process-wide state: a Trainer built earlier in the session (tests/test_grpo.py) fixed its
    # mixed precision to "no", and a bf16 Accelerator would then be refused. Start clean, leave clean.
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        Accelerator(mixed_precision="bf16", cpu=True).prepare_model(model)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert "_original_forward" in model.__dict__, "accelerate no longer wraps forward: the test is moot"
    wrapped = _logits(model, harmony_probe_ids()[:1])
    assert (wrapped - plain).abs().max().item() > 1e-3  # the control: autocast changes the logits

    measured = measure(model)
    reference = measure(_load(tiny_model_dir, adapter))
    assert torch.equal(measured["tensors"]["adapter"], reference["tensors"]["adapter"])
    assert model.forward.__func__ is not model._original_forward.__func__  # the wrapper is put back


def test_stack_bench_misreads_fail_and_the_saved_adapter_passes(tiny_model_dir: Path, adapter: Path,
                                                                 tmp_path: Path, repo_root: Path) -> None:
    """scripts/bench_fingerprint_stack.py (docs/BENCHMARKS.md "Fingerprint across stacks") on the tiny model in fp32:
    the saved adapter reproduces its fingerprint; each misread copy (expert lora_B read expert-major, expert LoRA
    switched off, every lora_B halved) moves the logits far past every candidate rule's tolerance; and each misread
    is undone in memory on exit (the model's logits after equal those before; inside they differ)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_fingerprint_stack",
                                                  repo_root / "scripts" / "bench_fingerprint_stack.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "report.json"
    assert bench.main(["--model", str(tiny_model_dir), "--adapter", str(adapter), "--out", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    rows = result["rows"]
    assert rows["adapter"]["rel_p90"] < 1e-4 and rows["base"]["rel_p90"] < 1e-4, rows
    assert result["shipped_check"]["passed"]
    for kind in ("experts_B_transposed", "experts_B_zeroed", "scale_x0.5"):
        assert rows[kind]["rel_median"] > 0.1, (kind, rows[kind])
        for rule in bench.RULES:
            assert result["rules"][rule]["adapter"] == "pass" and result["rules"][rule][kind] == "FAIL", (rule, kind)
    assert rows["one_expert_tensor_zeroed"]["rel_p90"] > 1e-3  # moved in fp32, whatever a bf16 rule can see

    import torch

    from pipeline_lib.fingerprint import _logits
    from pipeline_lib.probes import harmony_probe_ids

    model = _load(tiny_model_dir, adapter)
    probes = harmony_probe_ids()[:1]
    before = _logits(model, probes)
    for kind in ("experts_B_transposed", "experts_B_zeroed", "scale_x0.5", "one_expert_tensor_zeroed"):
        with bench.misread(model, kind):
            assert not torch.equal(_logits(model, probes), before), kind
        assert torch.equal(_logits(model, probes), before), kind


def test_fast_path_records_through_peft_and_keeps_the_tight_rule(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A fast-path run records its fingerprint with the swapped forwards off: the training process then computes
    exactly what plain PEFT will, so the same-stack rule (and its exact 0) applies, and the fast path is back on
    afterwards. Control: the same adapter with one expert lora_B zeroed fails that rule by far."""
    import torch
    from safetensors.torch import load_file, save_file

    from pipeline_lib import fast_path
    from pipeline_lib.modeling import Precision, load_causal_lm
    from pipeline_lib.unsloth_utils import apply_lora_config

    torch.manual_seed(0)
    model = apply_lora_config(load_causal_lm(tiny_model_dir, Precision("cpu", False, "float32", "eager", None)), 8,
                              backend="fast")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    out = tmp_path / "fast"
    model.save_pretrained(str(out))
    on_before = fast_path.fast_path_report(model)["layers"]
    summary = record_fingerprint(model, out, backend="fast")
    assert on_before > 0 and fast_path.fast_path_report(model)["layers"] == on_before  # switched back on
    assert (summary["backend"], summary["trained_by"]) == ("hf", "fast"), summary
    check = verify_fingerprint(_load(tiny_model_dir, out), out)
    assert check["same_stack"] and check["passed"] and check["value"] < 1e-5, check

    weights = load_file(str(out / "adapter_model.safetensors"))
    key = next(k for k in sorted(weights) if "experts" in k and "lora_B" in k)
    weights[key] = torch.zeros_like(weights[key])
    save_file(weights, str(out / "adapter_model.safetensors"))
    broken = verify_fingerprint(_load(tiny_model_dir, out), out, strict=False)
    assert not broken["passed"] and broken["value"] > 10 * broken["threshold"], (key, broken)
