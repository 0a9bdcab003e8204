"""The fast training path (pipeline_lib/fast_path.py) against stock PEFT on the tiny GPT-OSS, in fp32 on CPU.

Every equivalence here has a negative control that must fail: one expert's LoRA B dropped, a wrong packing, an
off-by-one target, the base model without its adapter.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from pipeline_lib import fast_path
from pipeline_lib.bench_train_step import (
    WORKLOADS,
    flops_per_token,
    grad_error,
    lora_grads,
    make_batch,
    randomize_lora_b,
    scaled,
)

FP32_RTOL = 1e-5  # measured: loss identical, worst LoRA-gradient slice 1.3e-6 relative (fp32, tiny model)


def fast_lora_model(tiny_model_dir, r: int = 8):
    from pipeline_lib.modeling import detect_precision, load_causal_lm
    from pipeline_lib.pack_sft import enable_packed_attention
    from pipeline_lib.unsloth_utils import apply_lora_config

    torch.manual_seed(0)
    base = load_causal_lm(tiny_model_dir, detect_precision("eager"))
    model = apply_lora_config(base, r, backend="fast")
    randomize_lora_b(model, std=0.05)  # B = 0 at init would hide any expert-LoRA bug
    enable_packed_attention(model)
    return model


def loss_and_grads(model, batch, *, fast: bool, drop: int | None = None):
    fast_path.set_fast_experts(model, fast)
    fast_path.set_drop_expert_lora_b(model, drop)
    model.zero_grad(set_to_none=True)
    kwargs = {"position_ids": batch["position_ids"]} if "position_ids" in batch else {}
    if fast:
        loss = fast_path.chunked_lm_loss(model, batch["input_ids"], batch["labels"], chunk=37, **kwargs)
    else:
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"], **kwargs).loss
    loss.backward()
    fast_path.set_drop_expert_lora_b(model, None)
    return float(loss.detach()), lora_grads(model)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return fast_lora_model(tiny_model_dir)


def test_fast_path_swaps_every_expert_block(model):
    from pipeline_lib.unsloth_utils import training_path

    fast_path.set_fast_experts(model, True)
    assert fast_path.fast_path_report(model)["layers"] == model.config.num_hidden_layers
    assert training_path(model, "fast").endswith("in 2 layers")
    fast_path.set_fast_experts(model, False)
    assert fast_path.fast_path_report(model)["layers"] == 0


@pytest.mark.parametrize("packed", [False, True])
def test_fast_loss_and_lora_grads_equal_stock_peft(model, packed):
    wl = WORKLOADS["phase2_r128_32k_packed" if packed else "phase1_r64_4k"]
    batch = make_batch(scaled(wl, 96 / wl.seq), model.config.vocab_size, "cpu", seed=3)
    n_experts = model.config.num_local_experts
    ref_loss, ref = loss_and_grads(model, batch, fast=False)
    loss, grads = loss_and_grads(model, batch, fast=True)
    err, where = grad_error(ref, grads, n_experts)
    assert math.isclose(loss, ref_loss, rel_tol=FP32_RTOL), (loss, ref_loss)
    assert err < FP32_RTOL, (err, where)
    assert any("experts" in n and "lora_A" in n for n in grads)  # the expert LoRA really got gradients
    # negative control: the same fast path with one expert's LoRA B dropped in layer 0 must fail both checks
    ctl_loss, ctl = loss_and_grads(model, batch, fast=True, drop=1)
    ctl_err, ctl_where = grad_error(ref, ctl, n_experts)
    assert ctl_err > 0.5 and "layers.0.mlp.experts" in ctl_where
    assert not math.isclose(ctl_loss, ref_loss, rel_tol=FP32_RTOL)


def test_packed_equals_unpacked_on_the_fast_path(model):
    """Two conversations packed in one row (positions restart, no cross attention) give each trained token the NLL
    it has alone; negative controls: the same row without the position reset, and with the reset at the wrong token.
    (Per-token NLLs, not mean losses: a random model's losses all sit near ln(201088).)"""
    fast_path.set_fast_experts(model, True)
    g = torch.Generator().manual_seed(5)
    a, b = torch.randint(0, 199_000, (1, 40), generator=g), torch.randint(0, 199_000, (1, 56), generator=g)
    lb = b.clone()
    lb[:, 0] = -100  # TRL's padding-free collator: a's last token is never trained to predict b's first

    def token_nll(ids, labels, pos=None):
        with torch.no_grad():
            hidden = fast_path.hidden_states(model, ids, position_ids=pos)
            targets = fast_path.shifted_targets(labels).reshape(-1)
            rows = (targets != -100).nonzero().squeeze(1)
            weight = fast_path.causal_lm_core(model).lm_head.weight
            flat = hidden.reshape(-1, hidden.shape[-1])
            return fast_path.chunked_token_nll(flat[rows], weight, targets[rows], 29)

    alone = torch.cat([token_nll(a, a), token_nll(b, lb)])
    ids, labels = torch.cat([a, b], 1), torch.cat([a, lb], 1)
    packed = token_nll(ids, labels, torch.cat([torch.arange(40), torch.arange(56)])[None])
    assert packed.shape == alone.shape
    packed_err = float((packed - alone).abs().max())
    assert packed_err < 1e-4, packed_err
    for pos in (torch.arange(96), torch.cat([torch.arange(30), torch.arange(66)])):
        bad = float((token_nll(ids, labels, pos[None]) - alone).abs().max())
        assert bad > 1e-3 and bad > 100 * packed_err, (bad, packed_err)


def test_chunked_cross_entropy_equals_full():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 50, 16, generator=g, dtype=torch.float64)
    weight = torch.randn(300, 16, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 300, (2, 50), generator=g)
    labels[0, :7] = -100
    h1 = hidden.clone().requires_grad_()
    targets = fast_path.shifted_targets(labels).reshape(-1)
    rows = (targets != -100).nonzero().squeeze(1)
    loss = fast_path.chunked_token_nll(h1.reshape(-1, 16)[rows], weight, targets[rows], 13).mean()
    loss.backward()
    h2 = hidden.clone().requires_grad_()
    full = torch.nn.functional.cross_entropy((h2 @ weight.T).reshape(-1, 300), targets, ignore_index=-100)
    full.backward()
    assert torch.allclose(loss, full, rtol=1e-12)
    assert torch.allclose(h1.grad, h2.grad, rtol=1e-10, atol=1e-14)
    # negative control: the unshifted labels (an off-by-one) give another loss
    flat = labels.reshape(-1)
    keep = (flat != -100).nonzero().squeeze(1)
    wrong = fast_path.chunked_token_nll(hidden.reshape(-1, 16)[keep], weight, flat[keep], 13).mean()
    assert not torch.allclose(wrong, full, rtol=1e-3)
    with pytest.raises(ValueError, match="frozen"):
        fast_path.chunked_token_nll(hidden.reshape(-1, 16), weight.requires_grad_(), targets.clamp(min=0), 13)


def test_sequence_logps_equal_full_logits(model):
    from pipeline_lib.bench_train_step import sequence_logps_stock

    fast_path.set_fast_experts(model, True)
    wl = scaled(WORKLOADS["ipo_2x8192"], 48 / 8192)
    batch = make_batch(wl, model.config.vocab_size, "cpu", seed=2)
    with torch.no_grad():
        fast = fast_path.chunked_sequence_logps(model, batch["input_ids"], batch["labels"], chunk=17)
        stock = sequence_logps_stock(model, batch)
    assert fast.shape == (2,)
    assert torch.allclose(fast, stock, rtol=1e-5)


def test_fast_trained_adapter_loads_in_plain_peft(tiny_model_dir, tmp_path):
    """A few fast-path optimizer steps, save, load with PeftModel.from_pretrained on a fresh base: same logits.
    Negative control: the base alone differs."""
    from peft import PeftModel

    from pipeline_lib.modeling import detect_precision, load_causal_lm

    model = fast_lora_model(tiny_model_dir, r=4)
    batch = make_batch(scaled(WORKLOADS["phase1_r64_4k"], 32 / 4096), model.config.vocab_size, "cpu", seed=9)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        fast_path.chunked_lm_loss(model, batch["input_ids"], batch["labels"]).backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        trained = model(input_ids=batch["input_ids"]).logits
        base = load_causal_lm(tiny_model_dir, detect_precision("eager"))
        plain_base = base(input_ids=batch["input_ids"]).logits
        loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
        assert not fast_path.fast_path_report(loaded)["layers"]  # plain PEFT: nothing of ours installed
        reloaded = loaded(input_ids=batch["input_ids"]).logits
    assert torch.allclose(reloaded, trained, rtol=1e-4, atol=1e-4)
    assert (plain_base - trained).abs().max() > 1e-2


def test_flops_per_token_real_shape(repo_root):
    """6 x 3.6e9 active matmul parameters (incl. lm_head) + LoRA + attention: ~23 GFLOP per token at 4K, r64."""
    from pipeline_lib.bench_train_step import gpt_oss_config

    config = gpt_oss_config(None, None)
    f4k = flops_per_token(config, WORKLOADS["phase1_r64_4k"])
    active = 24 * (2880 * 4096 * 2 + 2880 * 512 * 2 + 2880 * 32 + 4 * (2880 * 5760 + 2880 * 2880)) + 2880 * 201088
    assert 6 * active < f4k < 6 * active * 1.15
    # packed 3,000-token conversations attend over less context than a 4K row, but r128 adds LoRA FLOPs
    assert flops_per_token(config, WORKLOADS["phase2_r128_32k_packed"]) > 6 * active
    # the split --profile's floors use: its parts sum to the total, and at 790 TFLOP/s they are the floors of
    # docs/BENCHMARKS.md's Phase 1 and Phase 2 "where the time goes" tables
    from pipeline_lib.bench_train_step import floor_ms, flops_by_component

    for name in ("phase1_r64_4k", "phase2_r128_32k_packed"):
        assert abs(sum(flops_by_component(config, WORKLOADS[name]).values())
                   - flops_per_token(config, WORKLOADS[name])) < 1.0
    assert list(floor_ms(config, WORKLOADS["phase1_r64_4k"]).values()) == [77.1, 38.9, 6.7]
    assert list(floor_ms(config, WORKLOADS["phase2_r128_32k_packed"]).values()) == [638.5, 319.1, 39.8]


def test_make_batch_packed_labels():
    wl = scaled(WORKLOADS["phase2_r128_32k_packed"], 100 / 32768)
    batch = make_batch(wl, 201088, "cpu")
    pos, labels = batch["position_ids"][0], batch["labels"][0]
    starts = (pos == 0).nonzero().squeeze(1).tolist()
    assert starts == list(range(0, wl.seq, wl.doc_tokens))
    assert all(labels[s] == -100 for s in starts) and (labels != -100).sum() == wl.seq - len(starts)


def test_bench_numerics_check_passes_and_its_control_fails(tiny_model_dir):
    """The check the GPU bench runs before timing, on CPU in fp32: fast == stock, and the dropped-expert control
    is caught (else 'passed' would be False)."""
    from pipeline_lib.bench_train_step import check_fast_numerics, parse_args

    args = parse_args(["--model", str(tiny_model_dir), "--device", "cpu"])
    report = check_fast_numerics(args, WORKLOADS["phase2_r128_32k_packed"], "cpu", check_tokens=64)
    assert report["fast_matches"] and report["control_caught"] and report["passed"], report
    assert report["packed"] and report["grad_rel_err"]["control"] > 0.5


@pytest.mark.slow
def test_bench_end_to_end_on_cpu(tiny_model_dir, tmp_path):
    """The whole bench (parent + one child per backend) on the tiny model: JSON rows per backend and workload,
    unsloth recorded as skipped here, ratios filled in, and nothing left behind in --workdir."""
    import json

    from pipeline_lib.bench_train_step import main

    out = tmp_path / "bench.json"
    work = tmp_path / "work"
    work.mkdir()
    assert main(["--device", "cpu", "--model", str(tiny_model_dir), "--backends", "hf,fast,unsloth",
                 "--workloads", "phase1_r64_4k,qlora_r64_4k", "--seq-scale", str(48 / 4096), "--steps", "1",
                 "--warmup", "1", "--check-tokens", "48", "--workdir", str(work), "--json", str(out),
                 "--profile"]) == 0
    rows = {(r["backend"], r["workload"]): r for r in json.loads(out.read_text())}
    assert set(rows) == {(b, w) for b in ("hf", "fast", "unsloth") for w in ("phase1_r64_4k", "qlora_r64_4k")}
    fast = rows[("fast", "phase1_r64_4k")]
    assert fast["status"] == "ok" and fast["numerics_check"]["passed"] and fast["tokens_per_second"] > 0
    assert fast["optimizer"] == "adamw_torch_fused"
    assert fast["ratio_to_hf"] is not None and fast["ratio_to_unsloth"] is None
    assert fast["profile"]["device_ms_total"] > 0 and fast["profile"]["top_kernels"]
    assert set(fast["profile"]["floor_ms_by_component"]) == {"grouped_gemm (experts)", "attention (flex/sdpa)",
                                                             "dense_gemm (q/k/v/o, router, lm_head)"}
    assert rows[("fast", "qlora_r64_4k")]["status"] == "skipped"
    assert rows[("unsloth", "phase1_r64_4k")]["status"] == "skipped"
    assert {"backend", "workload", "tokens_per_second", "peak_gb", "versions", "date", "command"} <= set(fast)
    assert "PATH" not in fast and "HOME" not in fast  # run metadata only, never the process environment
    assert list(work.iterdir()) == []


def test_bench_workers_get_no_secrets(monkeypatch):
    import os

    from pipeline_lib.bench_train_step import REPO_ROOT, worker_env

    monkeypatch.setenv("HF_TOKEN", "hf_canary123")
    monkeypatch.setenv("RUNPOD_SECRET_HF_TOKEN", "hf_canary456")
    monkeypatch.setenv("BENCH_HARMLESS", "1")
    env = worker_env()
    assert "hf_canary" not in repr(env) and env["BENCH_HARMLESS"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)
    assert "hf_canary123" in repr(dict(os.environ))  # control: the search finds the canary where it is


@pytest.mark.slow
def test_bench_bf16_kernel_check_passes_and_its_control_fails(tiny_model_dir):
    """The 1-layer bf16 check the GPU bench adds (there through the grouped-GEMM and fused kernels; here the
    per-expert loop and eager maths): fast and stock bf16 both against the model in fp32, control at 1.0."""
    from pipeline_lib.bench_train_step import BF16_KERNEL_TOL, check_bf16_kernel, parse_args

    args = parse_args(["--model", str(tiny_model_dir), "--device", "cpu"])
    report = check_bf16_kernel(args, WORKLOADS["phase1_r64_4k"], "cpu", check_tokens=64)
    assert report["passed"], report
    err = report["grad_rel_err"]
    assert err["fast"] <= err["tolerance"] == max(BF16_KERNEL_TOL, 1.5 * err["stock"]) < 0.9 < err["control"]
    assert err["stock"] > 0 and err["fast_vs_stock"] > 0  # bf16 really rounded (the reference is another precision)


def _reference_swiglu(gate_up, alpha=1.702, limit=7.0):
    """transformers' GptOssExperts._apply_gate, copied from the module itself (not re-typed)."""
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    holder = type("Holder", (), {"alpha": alpha, "limit": limit})()
    return GptOssExperts._apply_gate(holder, gate_up)


def _swiglu_case(dtype):
    g = torch.Generator().manual_seed(3)
    gate_up = (torch.randn(64, 2 * 24, generator=g, dtype=torch.float64) * 6).to(dtype)  # ~25% beyond +-7
    gate_up[0, 0], gate_up[0, 1], gate_up[1, 1] = 7.0, -7.0, 7.0  # the clamp bounds themselves (inclusive masks)
    grad_out = torch.randn(64, 24, generator=g, dtype=torch.float64).to(dtype)
    return gate_up, grad_out


def _swiglu_value_and_grad(fn, gate_up, grad_out):
    x = gate_up.clone().requires_grad_(True)
    out = fn(x)
    out.backward(grad_out)
    return out.detach(), x.grad


def test_fused_swiglu_equals_gpt_oss_apply_gate_with_a_control():
    gate_up, grad_out = _swiglu_case(torch.float64)
    assert (gate_up.abs() > 7).float().mean() > 0.1  # the clamped branches are exercised
    ref_out, ref_grad = _swiglu_value_and_grad(_reference_swiglu, gate_up, grad_out)
    out, grad = _swiglu_value_and_grad(lambda x: fast_path.fused_swiglu(x, 1.702, 7.0), gate_up, grad_out)
    assert torch.allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    assert torch.allclose(grad, ref_grad, rtol=1e-12, atol=1e-12)
    # negative controls: a different limit (gradient masks) or alpha must not pass the same comparison
    for alpha, limit in ((1.702, 6.0), (1.0, 7.0)):
        bad_out, bad_grad = _swiglu_value_and_grad(lambda x, a=alpha, lim=limit: fast_path.fused_swiglu(x, a, lim),
                                                   gate_up, grad_out)
        assert not (torch.allclose(bad_out, ref_out, rtol=1e-6) and torch.allclose(bad_grad, ref_grad, rtol=1e-6))


def test_fused_swiglu_bf16_within_rounding_of_the_reference():
    gate_up, grad_out = _swiglu_case(torch.bfloat16)
    exact_out, exact_grad = _swiglu_value_and_grad(_reference_swiglu, gate_up.double(), grad_out.double())
    out, grad = _swiglu_value_and_grad(lambda x: fast_path.fused_swiglu(x, 1.702, 7.0), gate_up, grad_out)
    ref_out, ref_grad = _swiglu_value_and_grad(_reference_swiglu, gate_up, grad_out)
    assert out.dtype == grad.dtype == torch.bfloat16

    def rel(a, b):
        return float((a.double() - b).norm() / b.norm())
    # fp32 inside the fused kernel: no further from the exact value than stock bf16 autograd
    # (measured: out 1.3e-3 vs 1.5e-3, grad 1.6e-3 vs 3.0e-3)
    assert rel(out, exact_out) <= max(rel(ref_out, exact_out), 4e-3)
    assert rel(grad, exact_grad) <= max(rel(ref_grad, exact_grad), 4e-3)


def test_profile_fit_plan_covers_every_real_profile_once_per_shape():
    from pipeline_lib.bench_train_step import (
        FIT_PROFILES,
        PROFILE_FITS,
        PROFILE_FITS_REST,
        expand_workloads,
        profile_fit_plan,
        timed_equivalent,
    )
    from pipeline_lib.profiles import PHASES, load_profiles

    shapes, table = profile_fit_plan()
    data = load_profiles()
    assert len(table) == len(FIT_PROFILES) * len(PHASES)
    for row in table:
        entry = data["profiles"][row["profile"]][row["phase"]]
        w = shapes[row["workload"]]
        assert (w.seq, w.fit_only) == (entry["seq"], True)
        # TRL's DPOTrainer counts pairs: a pair is a chosen and a rejected row
        assert w.batch == entry["batch"] * (2 if row["phase"] == "ipo" else 1)
        assert w.lora_r == (64 if row["phase"] == "tool_calling_sft" else 128)
    assert len(shapes) == len({(w.lora_r, w.batch, w.seq, w.kind) for w in shapes.values()}) < len(table)
    assert expand_workloads(f"phase1_r64_4k,{PROFILE_FITS}").split(",") == ["phase1_r64_4k", *shapes]
    rest = expand_workloads(PROFILE_FITS_REST).split(",")
    # the balanced tool-calling, agent-SFT and conservative IPO micro-batches are the timed workloads themselves
    assert {timed_equivalent(shapes[n]) for n in shapes if n not in rest} == {
        "toolcall_8x8192", "phase2_r128_32k_packed", "ipo_2x8192"}
    assert all(timed_equivalent(shapes[n]) is None for n in rest)


def test_merge_results_across_parts(tmp_path, capsys):
    import json

    from pipeline_lib.bench_train_step import main, profile_fit_plan

    shapes, table = profile_fit_plan()
    fit_name = table[0]["workload"]
    (tmp_path / "a.json").write_text(json.dumps([
        {"backend": "fast", "workload": "phase1_r64_4k", "status": "ok", "tokens_per_second": 200.0},
        {"backend": "fast", "workload": fit_name, "status": "oom", "tokens_per_second": None, "error": "OOM"},
        {"backend": "fast", "workload": "phase2_r128_32k_packed", "status": "ok", "tokens_per_second": 9.0,
         "peak_gb": 70.5}]))
    (tmp_path / "b.json").write_text(json.dumps([
        {"backend": "unsloth", "workload": "phase1_r64_4k", "status": "ok", "tokens_per_second": 100.0},
        {"backend": "hf", "workload": "phase1_r64_4k", "status": "ok", "tokens_per_second": 80.0}]))
    (tmp_path / "phase_run.json").write_text(json.dumps([{"backend": "fast", "returncode": 0, "loss_falling": True}]))
    out = tmp_path / "bench.json"
    assert main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "missing.json"), str(tmp_path / "b.json"),
                 str(tmp_path / "phase_run.json"), "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    fast = next(r for r in records if r["backend"] == "fast" and r["workload"] == "phase1_r64_4k")
    assert (fast["ratio_to_unsloth"], fast["ratio_to_hf"]) == (2.0, 2.5)  # ratios across the two parts
    summary = next(r for r in records if r["workload"] == "batch_profiles_fit")
    rows = {(r["profile"], r["phase"]): r for r in summary["profiles"]}
    first = rows[(table[0]["profile"], table[0]["phase"])]
    assert (first["status"], first["fits"]) == ("oom", False)
    phase_run = next(r for r in records if r["workload"] == "phase_run")
    assert (phase_run["backend"], phase_run["phase_backend"], phase_run["status"]) == ("phase_script", "fast", "ok")
    agent = rows[("balanced", "agent_sft")]  # measured by the timed packed-32K workload, not a separate fit
    assert (agent["status"], agent["fits"], agent["peak_gb"], agent["measured_as"]) == (
        "ok", True, 70.5, "phase2_r128_32k_packed")
    assert all(r["status"] == "not run" for r in summary["profiles"]
               if r["workload"] != fit_name and "measured_as" not in r)
    assert "missing.json missing" in capsys.readouterr().out


def test_optimizer_state_exists_before_the_first_step():
    from pipeline_lib.bench_train_step import init_optimizer_state

    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-3)
    assert not opt.state  # control: AdamW allocates its state lazily, at the first step
    init_optimizer_state(opt, params)
    assert all(opt.state[p]["exp_avg"].shape == p.shape for p in params)
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))  # lr 0: nothing moved
    assert all(p.grad is None for p in params) and opt.param_groups[0]["lr"] == 1e-3


def test_bench_optimizers_are_the_ones_transformers_builds():
    """--optim goes through Trainer.get_optimizer_cls_and_kwargs: each name's step equals torch AdamW's with that
    name's settings (fused for adamw_torch_fused), a different learning rate does not (control); where bitsandbytes
    is not installed (this CPU venv: it comes with the gpt_oss extra) the 8-bit one is a clear error naming it."""
    import importlib.util

    from pipeline_lib.bench_train_step import OPTIMIZERS, make_optimizer, parse_args

    torch.manual_seed(0)
    start, grad = torch.randn(64, 32), torch.randn(64, 32)

    def step(opt_for: Any) -> torch.Tensor:
        p = torch.nn.Parameter(start.clone())
        opt = opt_for([p])
        p.grad = grad.clone()
        opt.step()
        return p.detach()

    for optim, fused in (("adamw_torch_fused", True), ("adamw_torch", None)):
        opt = make_optimizer([torch.nn.Parameter(start.clone())], optim, lr=1e-2)
        assert type(opt) is torch.optim.AdamW and opt.defaults["fused"] is fused, optim
        ours = step(lambda ps, optim=optim: make_optimizer(ps, optim, lr=1e-2))
        assert torch.allclose(ours, step(lambda ps, fused=fused: torch.optim.AdamW(ps, lr=1e-2, fused=fused)),
                              atol=1e-6), optim
        assert not torch.allclose(ours, step(lambda ps: torch.optim.AdamW(ps, lr=2e-2)), atol=1e-6)  # control
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(RuntimeError, match="bitsandbytes"):
            make_optimizer([torch.nn.Parameter(start.clone())], "adamw_bnb_8bit")
    else:
        opt = make_optimizer([torch.nn.Parameter(start.clone())], "adamw_bnb_8bit")
        assert type(opt).__module__.startswith("bitsandbytes") and opt.args.optim_bits == 8
    with pytest.raises(ValueError, match="expected one of"):
        make_optimizer([torch.nn.Parameter(start.clone())], "sgd")
    assert parse_args([]).optim == OPTIMIZERS[0] == "adamw_torch_fused"  # every committed figure's optimizer


def test_phase_run_bench_repeated_rows_and_loss_summary(tmp_path, repo_root):
    import importlib.util
    import json

    from datasets import load_from_disk

    spec = importlib.util.spec_from_file_location("bench_gpu_sft", repo_root / "scripts" / "bench_gpu_sft.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.make_dataset(tmp_path / "rep", rows=3, words_per_row=20, repeat=True)
    mod.make_dataset(tmp_path / "var", rows=3, words_per_row=20)
    assert len(set(load_from_disk(str(tmp_path / "rep"))["text"])) == 1
    assert len(set(load_from_disk(str(tmp_path / "var"))["text"])) == 3  # control: without --repeat rows differ
    state = tmp_path / "trainer_state.json"
    falling = [{"loss": 12.0 - 0.5 * i, "step": i} for i in range(12)]
    state.write_text(json.dumps({"log_history": falling}))
    assert mod.loss_summary(state)["loss_falling"] is True
    state.write_text(json.dumps({"log_history": falling[::-1]}))
    assert mod.loss_summary(state)["loss_falling"] is False
    state.write_text(json.dumps({"log_history": [*falling, {"loss": float("nan")}]}))
    assert mod.loss_summary(state)["loss_finite"] is False
    # a killed run has no trainer_state.json: the losses come from the Trainer's logged dicts
    log = "".join(f"{{'loss': {e['loss']}, 'grad_norm': 1.0, 'epoch': 0.1}}\n" for e in falling[:11])
    got = mod.loss_summary(tmp_path / "absent.json", log + "{'loss': '1.5e-01', 'epoch': 1}")
    assert got["losses"][-1] == 0.15 and len(got["losses"]) == 12 and got["loss_falling"] is True


def test_fused_swiglu_with_bias_rows_equals_gather_add_then_apply_gate():
    gate_up, grad_out = _swiglu_case(torch.float64)
    g = torch.Generator().manual_seed(5)
    bias = torch.randn(4, gate_up.shape[1], generator=g, dtype=torch.float64) * 3
    ids = torch.sort(torch.randint(0, 4, (gate_up.shape[0],), generator=g)).values
    ref_out, ref_grad = _swiglu_value_and_grad(lambda x: _reference_swiglu(x + bias[ids]), gate_up, grad_out)
    out, grad = _swiglu_value_and_grad(lambda x: fast_path.fused_swiglu(x, 1.702, 7.0, bias, ids), gate_up, grad_out)
    assert torch.allclose(out, ref_out, rtol=1e-12, atol=1e-12) and torch.allclose(grad, ref_grad, rtol=1e-12)
    shuffled = ids[torch.randperm(ids.numel(), generator=g)]  # control: bias rows of the wrong experts
    bad_out, _ = _swiglu_value_and_grad(lambda x: fast_path.fused_swiglu(x, 1.702, 7.0, bias, shuffled),
                                        gate_up, grad_out)
    assert not torch.allclose(bad_out, ref_out, rtol=1e-6)
    with pytest.raises(fast_path.FastPathUnavailable, match="frozen"):
        fast_path.fused_swiglu(gate_up, 1.702, 7.0, bias.clone().requires_grad_(True), ids)


def _routing_case(n_tokens=40, top_k=4, n_experts=6, hidden=16):
    g = torch.Generator().manual_seed(9)
    router_indices = torch.stack([torch.randperm(n_experts, generator=g)[:top_k] for _ in range(n_tokens)])
    expert_sorted, perm = torch.sort(router_indices.reshape(-1), stable=True)
    y = torch.randn(n_tokens * top_k, hidden, generator=g, dtype=torch.float64)
    bias = torch.randn(n_experts, hidden, generator=g, dtype=torch.float64)
    weights = torch.softmax(torch.randn(n_tokens, top_k, generator=g, dtype=torch.float64), dim=-1)
    grad = torch.randn(n_tokens, hidden, generator=g, dtype=torch.float64)
    return y, bias, expert_sorted, perm, weights, grad


def _combine_reference(y, bias, expert_sorted, perm, weights, n_tokens, top_k):
    """The unfused path (fast_experts_forward before the fused combine, same as transformers' grouped_mm one)."""
    out = (y + bias[expert_sorted]) * weights.reshape(-1)[perm].unsqueeze(-1)
    unsorted = torch.empty_like(out).index_copy_(0, perm, out)
    return unsorted.view(n_tokens, top_k, -1).sum(dim=1)


def test_fused_combine_equals_the_unfused_path_with_a_control():
    y, bias, expert_sorted, perm, weights, grad = _routing_case()
    n_tokens, top_k = weights.shape

    def run(fn):
        y_ = y.clone().requires_grad_(True)
        w_ = weights.clone().requires_grad_(True)
        out = fn(y_, w_)
        out.backward(grad)
        return out.detach(), y_.grad, w_.grad

    ref = run(lambda y_, w_: _combine_reference(y_, bias, expert_sorted, perm, w_, n_tokens, top_k))
    fast = run(lambda y_, w_: fast_path.fused_combine(y_, bias, expert_sorted, w_.reshape(-1)[perm], perm, top_k))
    for a, b in zip(fast, ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # control: the routing weights of the wrong rows (perm reversed inside the weights) must not pass
    bad = run(lambda y_, w_: fast_path.fused_combine(y_, bias, expert_sorted, w_.reshape(-1)[perm.flip(0)], perm,
                                                     top_k))
    assert not torch.allclose(bad[0], ref[0], rtol=1e-6)


def test_whole_model_runs_the_fused_kernels_and_the_unfused_path_still_matches(model, monkeypatch):
    """The fused SwiGLU/combine are what the fast path runs (a broken combine breaks the whole-model check), and the
    unfused path (set_fused_swiglu False) still equals stock PEFT."""
    wl = WORKLOADS["phase1_r64_4k"]
    batch = make_batch(scaled(wl, 64 / wl.seq), model.config.vocab_size, "cpu", seed=4)
    n_experts = model.config.num_local_experts
    ref_loss, ref = loss_and_grads(model, batch, fast=False)
    fast_path.set_fused_swiglu(model, False)
    try:
        loss, grads = loss_and_grads(model, batch, fast=True)
    finally:
        fast_path.set_fused_swiglu(model, True)
    assert math.isclose(loss, ref_loss, rel_tol=FP32_RTOL) and grad_error(ref, grads, n_experts)[0] < FP32_RTOL

    def uniform_weights(y, bias, expert_sorted, weights_sorted, inv, top_k):  # control: routing weights ignored
        return fast_path.combine_forward_math(y, bias, expert_sorted, weights_sorted * 0 + 1 / top_k, inv, top_k)

    monkeypatch.setattr(fast_path.COMBINE, "eager", (uniform_weights, fast_path.combine_backward_math))
    bad_loss, bad = loss_and_grads(model, batch, fast=True)
    assert grad_error(ref, bad, n_experts)[0] > 100 * FP32_RTOL


@pytest.mark.slow
def test_gpu_fast_bench_script_cpu_smoke(repo_root, tmp_path):
    """scripts/gpu_fast_bench.sh end to end in its TINY (CPU) mode: every part runs under its timeout, bench.json
    merges them (fast, hf, unsloth skipped here, the batch-profile table, the phase run recorded as not run on CPU)
    and the work folder is gone."""
    import json
    import os
    import subprocess
    import sys

    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "TINY": "1", "OUT": str(out), "WORK": str(work), "PYTHON": sys.executable,
           "TOTAL": "900", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(repo_root / "scripts" / "gpu_fast_bench.sh")], env=env, cwd=repo_root,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads((out / "bench.json").read_text())
    got = {(r["backend"], r["workload"]): r["status"] for r in records}
    assert got[("fast", "phase1_r64_4k")] == got[("hf", "phase1_r64_4k")] == "ok"
    assert got[("hf_ce", "phase2_r128_32k_packed")] == "ok"
    assert got[("fast", "toolcall_8x8192")] == got[("fast", "fit_grpo_r128_1x65536")] == "ok"
    assert got[("unsloth", "qlora_r64_4k")] == "skipped" and got[("summary", "part_phase_run")] == "skipped"
    table = next(r for r in records if r["workload"] == "batch_profiles_fit")["profiles"]
    assert len(table) == 12 and all(row["status"] == "ok" for row in table)
    assert not work.exists()
    assert all(f.stat().st_size < 2_000_000 for f in out.rglob("*") if f.is_file())


def test_suggest_profile_changes_keeps_the_effective_batch():
    from pipeline_lib.bench_train_step import suggest_profile_changes

    def row(profile, batch, accum, fits, phase="tool_calling_sft", seq=8192):
        return {"profile": profile, "phase": phase, "seq": seq, "batch": batch, "accum": accum, "fits": fits,
                "status": {True: "ok", False: "oom"}[fits], "memory_cap_gb": 80}

    table = [row("aggressive", 10, 5, False), row("balanced", 8, 6, True), row("conservative", 4, 12, True),
             row("aggressive", 4, 6, False, "agent_sft", 32768), row("balanced", 1, 24, True, "agent_sft", 32768),
             row("aggressive", 2, 8, False, "grpo", 65536), row("balanced", 1, 16, False, "grpo", 65536)]
    got = {(c["profile"], c["phase"]): c for c in suggest_profile_changes(table)}
    assert set(got) == {("aggressive", "tool_calling_sft"), ("aggressive", "agent_sft"), ("aggressive", "grpo"),
                        ("balanced", "grpo")}  # the fitting rows are left alone
    tc = got[("aggressive", "tool_calling_sft")]
    assert (tc["new_batch"], tc["new_accum"]) == (5, 10)  # 8 fits but does not divide 50: 5 x 10 keeps it
    assert (got[("aggressive", "agent_sft")]["new_batch"], got[("aggressive", "agent_sft")]["new_accum"]) == (1, 24)
    assert got[("balanced", "grpo")]["new_batch"] is None  # nothing of that length fits: no guess


def _lora_linear(dtype=torch.float32):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(24, 40, bias=True)).to(dtype)
    peft_net = get_peft_model(net, LoraConfig(r=4, lora_alpha=12, target_modules=["0"]))
    randomize_lora_b(peft_net, std=0.3)
    return peft_net


def _linear_value_and_grads(net, x, grad):
    net.zero_grad(set_to_none=True)
    out = net(x)
    out.backward(grad)
    return out.detach().float(), {n: p.grad.float().clone() for n, p in net.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("autocast", [False, True])
def test_fast_lora_linear_equals_peft_with_a_control(autocast):
    """q/k/v/o LoRA as x·Aᵀ + addmm(alpha=scaling): same output and LoRA gradients as PEFT's forward, in fp32 exactly
    and under (CPU) bf16 autocast within bf16 rounding; control: a wrong scaling must fail the same comparison."""
    import contextlib

    net = _lora_linear()
    layer = net.base_model.model[0]
    assert fast_path.enable_fast_lora_linear(net) == 1
    g = torch.Generator().manual_seed(1)
    x, grad = torch.randn(3, 5, 24, generator=g), torch.randn(3, 5, 40, generator=g)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    tol = 2e-2 if autocast else 1e-6  # measured: 0 / 3.7e-8 in fp32, 3.6e-3 under autocast; the control ~0.1

    def run(fast):
        layer._fast_lora["enabled"] = fast
        with ctx():
            return _linear_value_and_grads(net, x, grad)

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    ref_out, ref = run(False)
    out, grads = run(True)
    assert rel(out, ref_out) < tol and all(rel(grads[n], ref[n]) < tol for n in ref)
    scaling = layer.scaling["default"]
    layer.scaling["default"] = scaling * 1.1  # control
    try:
        bad_out, bad = run(True)
    finally:
        layer.scaling["default"] = scaling
    assert rel(bad_out, ref_out) > tol or any(rel(bad[n], ref[n]) > tol for n in ref)
    assert rel(bad["base_model.model.0.lora_B.default.weight"], ref["base_model.model.0.lora_B.default.weight"]) > tol


def test_fast_path_swaps_the_attention_lora_too(model):
    fast_path.set_fast_experts(model, True)
    report = fast_path.fast_path_report(model)
    assert report["attention_lora"].startswith(f"{4 * model.config.num_hidden_layers} lora.Linear")
    fast_path.set_fast_experts(model, False)  # the stock reference turns them off too
    assert fast_path.fast_path_report(model)["attention_lora"].startswith("0 lora.Linear")
    fast_path.set_fast_experts(model, True)
