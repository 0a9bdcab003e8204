"""pipeline_lib.multi_gpu without processes: the per-GPU memory plan (README "GPT-OSS-120B") checked against
parameter counts written out by hand from configs/gpt-oss-120b/config.json, and the report's resume verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib import multi_gpu

REPO = Path(__file__).resolve().parents[1]
CONFIG_120B = REPO / "configs" / "gpt-oss-120b"


def hand_counts(config: dict, r: int) -> tuple[int, int, int]:
    """(all parameters, one decoder layer's, LoRA r on q/k/v/o + both expert tensors) from the config's numbers."""
    h, v, layers = config["hidden_size"], config["vocab_size"], config["num_hidden_layers"]
    e, i = config["num_local_experts"], config["intermediate_size"]
    q, kv = config["num_attention_heads"] * config["head_dim"], config["num_key_value_heads"] * config["head_dim"]
    attention = (h * q + q) + 2 * (h * kv + kv) + (q * h + h) + config["num_attention_heads"]  # biases, sinks
    experts = (e * h + e) + (e * h * 2 * i + e * 2 * i) + (e * i * h + e * h)  # router, gate_up, down (+ biases)
    layer = attention + experts + 2 * h  # two RMSNorms
    params = 2 * v * h + layers * layer + h  # embedding + untied lm_head, final norm
    # PEFT LoRA: r x (in + out) per linear; on a 3-D expert tensor r x (in + out) per expert
    lora = layers * (r * (h + q) + 2 * r * (h + kv) + r * (q + h) + e * r * (h + 2 * i) + e * r * (i + h))
    return params, layer, lora


def test_120b_counts_match_the_published_size():
    config = json.loads((CONFIG_120B / "config.json").read_text())
    params, _, lora = hand_counts(config, 64)
    assert params == 116_829_156_672  # "117B" in OpenAI's model card
    assert lora == 4_294_508_544


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_memory_plan_120b_per_component(gpus):
    config = json.loads((CONFIG_120B / "config.json").read_text())
    r, seq, batch = 64, 8192, 1
    params, layer, lora = hand_counts(config, r)
    sharded = gpus > 1
    plan = multi_gpu.memory_plan(CONFIG_120B, gpus=gpus, lora_r=r, seq=seq, batch=batch, sharded=sharded)
    assert plan["params"] == params and plan["lora_trainable"] == lora
    assert plan["weights"] == params * 2 // gpus  # bf16, 1/N under FSDP2
    assert plan["lora_params"] == plan["gradients"] == lora * 4 // gpus  # fp32 adapter and its gradient
    assert plan["optimizer"] == lora * 8 // gpus  # AdamW: two fp32 moments
    gathered = 2 * layer * 2 if sharded else 0  # FSDP2: the running and the prefetched layer, bf16
    assert plan["activations"] == (config["num_hidden_layers"] * batch * seq * config["hidden_size"] * 2
                                   + batch * seq * config["vocab_size"] * 4 + gathered)
    assert plan["total"] == sum(plan[k] for k in ("weights", "lora_params", "gradients", "optimizer", "activations"))
    if gpus == 1:  # 234 GB of bf16 weights: no single 141 GB H200 holds 120B in 16-bit
        assert plan["weights"] > 141e9


def test_memory_plan_control_ddp_does_not_shard():
    """Control: the same 4 GPUs under DDP (sharded=False) keep every byte of weights and AdamW state per GPU."""
    ddp = multi_gpu.memory_plan(CONFIG_120B, gpus=4, lora_r=64, seq=8192, sharded=False)
    fsdp = multi_gpu.memory_plan(CONFIG_120B, gpus=4, lora_r=64, seq=8192, sharded=True)
    assert ddp["weights"] == 4 * fsdp["weights"] and ddp["optimizer"] == 4 * fsdp["optimizer"]
    with pytest.raises(ValueError, match="gpus, lora_r, seq and batch must be >= 1"):
        multi_gpu.memory_plan(CONFIG_120B, gpus=0, lora_r=64, seq=8192)


def test_plan_table_rows():
    table = multi_gpu.plan_table(CONFIG_120B, lora_r=64, seq=8192)
    lines = table.splitlines()
    assert lines[0] == "| GPUs | weights | lora_params | gradients | optimizer | activations | total |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| 1", "| 2 (FSDP2)", "| 4 (FSDP2)", "| 8 (FSDP2)"]
    assert lines[2].split(" | ")[1] == "233.7"  # 116,829,156,672 x 2 bytes


def metrics(**over) -> dict:
    m = {"resumed_from_step": 2, "global_step": 6, "max_steps": 6, "world_size": 2,
         "lora_update_check": {"passed": True, "expert_lora_changed": 48}}
    m.update(over)
    return m


def test_resume_verdict():
    assert multi_gpu.resume_result(metrics(), "checkpoint-2 ")["passed"]
    # controls: each way the kill/resume can go wrong fails with its reason
    assert "not killed" in multi_gpu.resume_result(metrics(), None)["problems"][0]
    assert "did not resume" in multi_gpu.resume_result(metrics(resumed_from_step=None), "c")["problems"][0]
    assert "already max_steps" in multi_gpu.resume_result(metrics(resumed_from_step=6), "c")["problems"][0]
    assert "global_step 5" in multi_gpu.resume_result(metrics(global_step=5), "c")["problems"][0]
    assert not multi_gpu.resume_result(None, "c")["passed"]


def test_report_verdict_and_fsdp_only():
    """The report passes with a ratio and a passing resume; --fsdp-only (scaling skipped on purpose) needs the
    resume alone. Controls: no ratio without --fsdp-only fails, and --fsdp-only never excuses a failed resume."""
    good = {"ddp_scaling": {"ratio": 1.9}, "fsdp2_kill_resume": {"passed": True}}
    no_ratio = {"ddp_scaling": {"ratio": None}, "fsdp2_kill_resume": {"passed": True}}
    bad_resume = {"ddp_scaling": {"ratio": None}, "fsdp2_kill_resume": {"passed": False}}
    assert multi_gpu.report_passed(good) and multi_gpu.report_passed(no_ratio, fsdp_only=True)
    assert not multi_gpu.report_passed(no_ratio)
    assert not multi_gpu.report_passed(bad_resume, fsdp_only=True)


def test_scaling_ratio_and_unlike_runs():
    one = {"throughput": {"tokens_per_second_median": 1000.0, "tokens_per_step_median": 65536}}
    two = {"world_size": 2, "throughput": {"tokens_per_second_median": 1900.0, "tokens_per_step_median": 65536}}
    s = multi_gpu.scaling(one, two)
    assert s["ratio"] == 1.9 and s["meets_target"] and "warning" not in s
    unlike = multi_gpu.scaling(one, {**two, "throughput": {"tokens_per_second_median": 1800.0,
                                                           "tokens_per_step_median": 32768}})
    assert unlike["meets_target"] is False and "not like for like" in unlike["warning"]
    assert multi_gpu.scaling(one, None)["ratio"] is None


def test_gpu_script_refuses_bad_flags_and_keeps_multicast_off(tmp_path):
    """scripts/gpu_multi_gpu.sh (the lead's 2-GPU call): bad flags stop it before anything runs, and NVLink
    multicast is switched off (NCCL, PyTorch symmetric memory, NVSHMEM) before the first process starts."""
    import subprocess

    script = REPO / "scripts" / "gpu_multi_gpu.sh"
    for flags, message in ((["--layers", "four"], "--layers must be a positive integer, got 'four'"),
                           (["--budget", "9m"], "--budget must be seconds, got '9m'"),
                           (["--backend", "unsloth"], "--backend must be hf or fast, got 'unsloth'"),
                           (["--nope"], "unknown argument '--nope'")):
        out = subprocess.run(["bash", str(script), *flags, "--workdir", str(tmp_path / "w")], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2 and message in out.stderr, (flags, out.stderr)
    assert not (tmp_path / "w").exists()  # refused before the workdir was made
    lines = script.read_text().splitlines()
    export = next(i for i, line in enumerate(lines) if line.startswith("export NCCL_NVLS_ENABLE=0"))
    assert "TORCH_SYMM_MEM_DISABLE_MULTICAST=1" in lines[export] and "NVSHMEM_DISABLE_NVLS=1" in lines[export]
    first_launch = min(i for i, line in enumerate(lines) if line.lstrip().startswith(("timed ", "setsid ")))
    assert export < first_launch
