"""Phase 3 (IPO): the reference is the agent-SFT policy, TRL's IPO loss at step 0 is its closed form, Harmony text
survives TRL's tokenisation, and the script trains, saves and resumes on the tiny GPT-OSS."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest
import torch

from pipeline_lib import ipo

SYSTEM = "<|start|>system<|message|>You are a coding agent working in a terminal.<|end|>"
PAIRS = [
    ("Fix the bug", "<|channel|>final<|message|>Here is the fix: use `<=` in the loop bound.<|return|>"),
    ("Add a test", "<|channel|>final<|message|>Added `test_parse_empty` covering the empty input.<|return|>"),
    ("Why does it crash?", "<|channel|>final<|message|>`config` is None when the file is absent; guard it.<|return|>"),
    ("Rename the flag", "<|channel|>final<|message|>Renamed `--verbose` to `--debug` in cli.py and docs.<|return|>"),
]
STALL = "<|channel|>final<|message|>I would need to analyze this further before proceeding.<|return|>"
BETA = 0.1


def preference_rows() -> list[dict[str, str]]:
    rows = []
    for user, chosen in PAIRS:
        prompt = f"{SYSTEM}<|start|>user<|message|>{user}<|end|><|start|>assistant"
        rows.append({"text": prompt + chosen, "pref_prompt": prompt, "pref_chosen": chosen, "pref_rejected": STALL,
                     "source": "test"})
    return rows


@pytest.fixture(scope="module", autouse=True)
def restore_trl_lm_head():
    """install_cpu_logprob_head sets a TRL module global; leave it as found for the other test files."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._ChunkedLogProbFunction
    yield
    trl_utils._ChunkedLogProbFunction = original


@pytest.fixture(scope="module")
def preference_dir(tmp_path_factory):
    from datasets import Dataset

    path = tmp_path_factory.mktemp("preference") / "train"
    Dataset.from_list(preference_rows()).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def sft_adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA r=8 adapter on q/k/v/o + experts with random A and B drawn from a seeded generator (PEFT's own A init
    uses the global RNG, which depends on test order), so the SFT policy differs from the base by the same amount
    on every run."""
    from peft import LoraConfig, get_peft_model

    from pipeline_lib.modeling import load_causal_lm
    from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

    out = tmp_path_factory.mktemp("agent_sft") / "final"
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(load_causal_lm(tiny_model_dir), config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.normal_(0.0, 0.5, generator=generator)
    model.save_pretrained(str(out))
    load_gpt_oss_tokenizer(tiny_model_dir).save_pretrained(str(out))
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    return out


def ipo_args(tmp_path, **overrides) -> ipo.IPOConfig:
    from pipeline_lib.modeling import detect_precision

    kwargs = dict(output_dir=str(tmp_path / "out"), beta=BETA, per_device_train_batch_size=2, max_length=256,
                  gradient_checkpointing=False, save_strategy="no", seed=0, **detect_precision().trainer_kwargs())
    kwargs.update(overrides)
    return ipo.IPOConfig(**kwargs)


def build_trainer(sft_adapter_dir, preference_dir, tokenizer, tmp_path):
    policy = ipo.load_adapter_policy(sft_adapter_dir)
    dataset = ipo.load_preference_dataset(preference_dir)
    return ipo.build_ipo_trainer(policy, tokenizer, dataset, ipo_args(tmp_path))


@pytest.fixture(scope="module")
def ipo_trainer(sft_adapter_dir, preference_dir, gpt_oss_tokenizer, tmp_path_factory):
    """Built once (model load + tokenisation + reference precompute); tests below only read from it."""
    return build_trainer(sft_adapter_dir, preference_dir, gpt_oss_tokenizer, tmp_path_factory.mktemp("ipo"))


def plain_logps(model, batch) -> torch.Tensor:
    """Summed completion log-probs from the model's ordinary logits: an oracle independent of TRL's LM head."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    logps = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logps * batch["completion_mask"][:, 1:]).sum(1)


def ipo_loss_by_hand(policy: torch.Tensor, ref: torch.Tensor, completion_mask: torch.Tensor, beta: float) -> float:
    """TRL 1.15's IPO loss written out: per-token-averaged log-ratios, h = chosen - rejected, mean (h - 1/2b)^2."""
    ratio = (policy - ref) / completion_mask.sum(1).clamp(min=1)
    chosen, rejected = ratio.chunk(2)
    return float(((chosen - rejected - 1 / (2 * beta)) ** 2).mean())


def test_preference_dataset_renamed_and_checked(preference_dir, tmp_path):
    from datasets import Dataset

    dataset = ipo.load_preference_dataset(preference_dir)
    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    assert dataset[0]["prompt"].endswith("<|start|>assistant")

    rows = preference_rows()
    rows[2]["pref_chosen"] = rows[2]["pref_chosen"].replace("<|return|>", "<|call|>")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "bad_end"))
    with pytest.raises(ValueError, match=r"row 2: pref_chosen must .*<\|return\|>"):
        ipo.load_preference_dataset(tmp_path / "bad_end")

    rows = preference_rows()
    rows[1]["pref_prompt"] += "<|channel|>final<|message|>"
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "bad_prompt"))
    with pytest.raises(ValueError, match=r"row 1: pref_prompt must end with"):
        ipo.load_preference_dataset(tmp_path / "bad_prompt")

    Dataset.from_list([{"prompt": "x", "chosen": "y", "rejected": "z"}]).save_to_disk(str(tmp_path / "renamed"))
    with pytest.raises(ValueError, match="missing column"):
        ipo.load_preference_dataset(tmp_path / "renamed")


def test_base_model_resolution(sft_adapter_dir, tiny_model_dir, tmp_path):
    assert ipo.resolve_base_model(sft_adapter_dir) == str(tiny_model_dir)
    assert ipo.resolve_base_model(sft_adapter_dir, str(tiny_model_dir)) == str(tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="--base_model"):
        ipo.resolve_base_model(sft_adapter_dir, str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        ipo.resolve_base_model(tmp_path)


def test_cpu_logprob_head_matches_plain_log_softmax(ipo_trainer):
    trainer = ipo_trainer
    batch = ipo.first_batch(trainer)
    model = trainer.model
    fused = torch.cat(ipo.completion_logps(model, batch))
    torch.testing.assert_close(fused, plain_logps(model, batch), atol=1e-4, rtol=1e-5)
    # Negative control: the oracle with an off-by-one at the completion's start (its first token not scored) is far
    # away: one token's log-prob is ~ -log(vocab) on this random model. (A roll of the mask was the control until
    # rows were padded to 128: rolled into padding it swaps two similar log-probs rather than dropping one.)
    mask = batch["completion_mask"].clone()
    mask[torch.arange(mask.shape[0]), mask.argmax(1)] = 0
    assert (fused - plain_logps(model, dict(batch, completion_mask=mask))).abs().max() > 1.0


def test_harmony_text_tokenised_as_is(ipo_trainer, gpt_oss_tokenizer):
    from pipeline_lib.tokenizer import BOS_ID, RETURN_ID

    tokenizer, trainer = gpt_oss_tokenizer, ipo_trainer
    channel_id = tokenizer.convert_tokens_to_ids("<|channel|>")
    for row, raw in zip(trainer.train_dataset, preference_rows(), strict=True):
        for side in ("chosen", "rejected"):
            ids = row["prompt_ids"] + row[f"{side}_ids"]
            # No chat template, no BOS, no second <|return|>: exactly the Harmony text data prep wrote.
            assert ids == tokenizer(raw["pref_prompt"] + raw[f"pref_{side}"])["input_ids"]
            assert row["prompt_ids"] == tokenizer(raw["pref_prompt"])["input_ids"]
            assert BOS_ID not in ids and ids.count(RETURN_ID) == 1
            assert row[f"{side}_ids"][0] == channel_id and row[f"{side}_ids"][-1] == RETURN_ID


def test_reference_is_sft_policy_and_step0_loss_is_closed_form(ipo_trainer):
    trainer = ipo_trainer
    assert "ref" in trainer.model.peft_config
    check = ipo.check_reference_at_step0(trainer)
    assert check.equal and check.max_abs_diff <= 1e-5 and check.pairs == 2

    batch = ipo.first_batch(trainer)
    model = trainer.model
    ref = torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]])
    policy = plain_logps(model, batch)
    torch.testing.assert_close(ref, policy, atol=1e-4, rtol=1e-5)  # per example, against an independent oracle
    with model.disable_adapter():  # the adapter is not trivial: the base scores these completions differently,
        # by whole nats on some pairs (0.96 measured), 4 orders of magnitude above the check's tolerance
        assert (plain_logps(model, batch) - policy).abs().max() > 0.5

    with torch.no_grad():
        loss = float(trainer.compute_loss(model, batch))
    assert loss == pytest.approx(ipo.ipo_step0_loss(BETA), abs=1e-4) == pytest.approx(25.0)
    assert loss == pytest.approx(ipo_loss_by_hand(policy, ref, batch["completion_mask"], BETA), abs=1e-4)


def test_negative_control_trl_base_reference(sft_adapter_dir, preference_dir, gpt_oss_tokenizer, tmp_path,
                                             monkeypatch):
    """TRL's own fallback branch (taken with PEFT < 0.20 + target_parameters): reference = adapter-disabled base."""
    import peft

    monkeypatch.setattr(peft, "__version__", "0.19.0")
    trainer = build_trainer(sft_adapter_dir, preference_dir, gpt_oss_tokenizer, tmp_path)
    assert "ref" not in trainer.model.peft_config
    check = ipo.check_reference_at_step0(trainer)
    assert not check.equal and check.max_abs_diff > 0.1

    batch = ipo.first_batch(trainer)
    model = trainer.model
    ref = torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]])
    with model.disable_adapter():
        torch.testing.assert_close(ref, plain_logps(model, batch), atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        loss = float(trainer.compute_loss(model, batch))
    assert abs(loss - ipo.ipo_step0_loss(BETA)) > 1e-2
    assert loss == pytest.approx(ipo_loss_by_hand(plain_logps(model, batch), ref, batch["completion_mask"], BETA),
                                 abs=1e-3)


def test_config_yaml_and_cli(repo_root, sft_adapter_dir, preference_dir, tmp_path):
    from trl import TrlParser

    parser = TrlParser((ipo.IPOScriptArguments, ipo.IPOConfig))
    script_args, args = parser.parse_args_and_config(
        args=["--config", str(repo_root / "configs" / "ipo.yaml"), "--checkpoint", str(sft_adapter_dir),
              "--train_data_path", str(preference_dir), "--beta", "0.2", "--use_cpu", "--bf16", "false"])
    assert args.loss_type == ["ipo"] and args.precompute_ref_log_probs and args.router_aux_loss_coef == 0.0
    assert args.beta == 0.2 and args.gradient_accumulation_steps == 16 and args.max_length == 8192
    assert script_args.checkpoint == str(sft_adapter_dir) and script_args.strict_reference
    with pytest.raises(ValueError, match="loss_type"):
        ipo.IPOConfig(output_dir=str(tmp_path / "x"), loss_type=["sigmoid"], use_cpu=True, bf16=False)


def test_script_loads_ipo_yaml_without_config(repo_root, sft_adapter_dir, preference_dir):
    """The orchestrator passes no --config: configs/ipo.yaml (cosine, warm-up, save_total_limit) must still apply."""
    parse_args = runpy.run_path(str(repo_root / "scripts" / "17_ipo_preference.py"), run_name="ipo_script")[
        "parse_args"]
    required = ["--checkpoint", str(sft_adapter_dir), "--train_data_path", str(preference_dir)]
    script_args, args = parse_args(required)
    # YAML-only values (the dataclass defaults are linear, 0 and None)
    assert args.lr_scheduler_type == "cosine" and args.warmup_steps == 5 and args.save_total_limit == 3
    assert args.gradient_accumulation_steps == 16 and script_args.checkpoint == str(sft_adapter_dir)
    _, args = parse_args([*required, "--lr_scheduler_type", "linear", "--save_total_limit", "1"])
    assert args.lr_scheduler_type == "linear" and args.save_total_limit == 1 and args.warmup_steps == 5  # CLI wins


@pytest.mark.slow
def test_script_trains_saves_and_resumes(repo_root, sft_adapter_dir, preference_dir, tmp_path):
    out = tmp_path / "agent_sft_ipo"
    command = [sys.executable, str(repo_root / "scripts" / "17_ipo_preference.py"), "--checkpoint",
               str(sft_adapter_dir), "--train_data_path", str(preference_dir), "--per_device_train_batch_size", "2",
               "--gradient_accumulation_steps", "1", "--output_dir", str(out), "--beta", "0.1", "--max_length", "256",
               "--learning_rate", "1e-3", "--save_steps", "1", "--gradient_checkpointing", "false",
               "--warmup_steps", "0"]  # configs/ipo.yaml warms up over 5 steps: lr 0 at step 1
    first = subprocess.run([*command, "--max_steps", "1"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.strip().splitlines()[-1].startswith("IPO done: 1 steps")
    final = out / "final"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "trainer_state.json",
                 "provenance.json", "phase_metrics.json", "logits_fingerprint.safetensors"):
        assert (final / name).is_file(), name
    assert not (final / "ref").exists() and not (out / "checkpoint-1" / "ref").exists()  # the "ref" copy is gone
    metrics = json.loads((final / "phase_metrics.json").read_text())
    assert metrics["phase"] == "ipo" and metrics["reference"] == "sft_policy" and metrics["ref_equals_policy_at_step0"]
    assert metrics["loss_step0"] == pytest.approx(25.0, abs=1e-3) and metrics["global_step"] == 1
    assert metrics["beta"] == 0.1 and metrics["rewards_margins"] is not None and metrics["lora_r"] == 8
    assert metrics["throughput"]["first_step_seconds"] > 0  # what gpu_smoke.sh reports per phase
    check = metrics["lora_update_check"]  # the phase 1/2 LoRA-update check runs in IPO too
    assert check["passed"] and check["experts_trained"] and check["expert_lora_changed"] > 0
    assert check["lora_changed"] == check["lora_tensors"] > 0 and check["base_changed"] == []

    # The resumed run goes in-process (same argv parsing, no second interpreter start-up on the 2-core CI box).
    main = runpy.run_path(command[1], run_name="ipo_script")["main"]
    main([*command[2:], "--max_steps", "2", "--resume_from_checkpoint", str(out / "checkpoint-1")])
    state = json.loads((final / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2]
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert losses[1] < losses[0]  # lr 1e-3: the IPO loss moves off 25 the right way

    # Every LoRA tensor trained, the experts' included (frozen experts pass silently elsewhere).
    from safetensors.torch import load_file

    before = load_file(str(sft_adapter_dir / "adapter_model.safetensors"))
    after = load_file(str(final / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any("experts" in k for k in after)
    assert [k for k in after if torch.equal(after[k], before[k])] == []

    # Negative control: learning rate 0 trains nothing; the check says so and the phase fails after writing final/.
    from pipeline_lib.unsloth_utils import LoraUpdateError

    frozen = tmp_path / "frozen_ipo"
    frozen_argv = [*command[2:], "--max_steps", "1", "--learning_rate", "0"]
    frozen_argv[frozen_argv.index("--output_dir") + 1] = str(frozen)
    with pytest.raises(LoraUpdateError, match="LoRA tensors unchanged"):
        main(frozen_argv)
    frozen_check = json.loads((frozen / "final" / "phase_metrics.json").read_text())["lora_update_check"]
    assert not frozen_check["passed"] and frozen_check["lora_changed"] == 0

@pytest.mark.slow
def test_script_fast_backend_one_step(repo_root, sft_adapter_dir, preference_dir, tmp_path, capsys):
    """--backend fast: the fast path computes the expert LoRA of policy and reference alike (reference check passes,
    step-0 loss is the closed form), every LoRA tensor trains, and the path is logged and recorded."""
    from safetensors.torch import load_file

    out = tmp_path / "ipo_fast"
    main = runpy.run_path(str(repo_root / "scripts" / "17_ipo_preference.py"), run_name="ipo_script")["main"]
    metrics = main(["--checkpoint", str(sft_adapter_dir), "--train_data_path", str(preference_dir),
                    "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--output_dir",
                    str(out), "--max_length", "256", "--learning_rate", "1e-3", "--max_steps", "2",
                    "--gradient_checkpointing", "false", "--warmup_steps", "0", "--backend", "fast"])
    assert metrics["backend"] == "fast" and metrics["training_path"].startswith("fast: expert LoRA as split")
    assert metrics["reference"] == "sft_policy" and metrics["loss_step0"] == pytest.approx(25.0, abs=1e-3)
    assert "IPO training path: fast:" in capsys.readouterr().out
    before = load_file(str(sft_adapter_dir / "adapter_model.safetensors"))
    after = load_file(str(out / "final" / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and [k for k in after if torch.equal(after[k], before[k])] == []
    assert metrics["lora_update_check"]["passed"] and metrics["lora_update_check"]["experts_trained"]


def test_reference_precompute_runs_eager_and_flex_is_restored(sft_adapter_dir, monkeypatch):
    """On CUDA the policy runs flex_attention, whose no-grad inductor kernel failed on the H200 (smoke run
    2026-11-28): DPOTrainer's reference precompute (in its __init__) must see eager, and training flex again.
    Control: the attention implementation outside build_ipo_trainer is untouched (flex before and after)."""
    import trl

    policy = ipo.load_adapter_policy(sft_adapter_dir)
    configs = [m.config for m in policy.modules() if hasattr(m, "config")]
    for config in configs:
        config._attn_implementation = "flex_attention"
    seen = []

    class RecordingTrainer:
        def __init__(self, model, **kwargs):
            seen.append({c._attn_implementation for c in configs})

    monkeypatch.setattr(trl, "DPOTrainer", RecordingTrainer)
    ipo.build_ipo_trainer(policy, None, None, None)
    assert seen == [{"eager"}]
    assert {c._attn_implementation for c in configs} == {"flex_attention"}


def test_step0_check_runs_under_the_precompute_attention(ipo_trainer, monkeypatch):
    """The step-0 check compares the cached reference (computed eager, see above) with a policy pass; on the H200
    a flex policy pass against the eager reference differed by 2.01 in bf16 and stopped a correct run (smoke run H,
    2026-11-28). The policy pass must see eager too, and flex must be back afterwards.
    Control: before the check, the model runs flex."""
    trainer = ipo_trainer
    model = trainer.accelerator.unwrap_model(trainer.model)
    configs = [m.config for m in model.modules() if hasattr(m, "config")]
    original = [c._attn_implementation for c in configs]
    seen = []
    real = ipo.completion_logps

    def recording(model, batch, autocast=None):
        seen.append({c._attn_implementation for c in configs})
        return real(model, batch, autocast)

    monkeypatch.setattr(ipo, "completion_logps", recording)
    try:
        for config in configs:
            config._attn_implementation = "flex_attention"
        ipo.check_reference_at_step0(trainer)
        assert seen == [{"eager"}]
        assert {c._attn_implementation for c in configs} == {"flex_attention"}
    finally:  # the fixture is shared by the module's other tests
        for config, impl in zip(configs, original, strict=True):
            config._attn_implementation = impl


def test_rows_padded_to_flex_block(ipo_trainer, gpt_oss_tokenizer):
    """Every IPO batch is a multiple of flex attention's 128-token block: shorter queries are lowered to inductor's
    flex decoding kernel, which failed the first training step on the H200 (docs/BENCHMARKS.md "Smoke runs I–K").
    Control: the same rows without the padding are shorter than one block (the fixture's rows are < 128 tokens)."""
    assert ipo.IPOConfig.__dataclass_fields__["pad_to_multiple_of"].default == 128
    assert ipo_trainer.args.pad_to_multiple_of == 128
    batch = ipo.first_batch(ipo_trainer)
    assert batch["input_ids"].shape[1] % 128 == 0
    mask_tokens = int(batch["attention_mask"].sum(1).max())
    assert mask_tokens < batch["input_ids"].shape[1], "the fixture's rows must be shorter than a block"

    from trl.trainer.dpo_trainer import DataCollatorForPreference

    examples = [ipo_trainer.train_dataset[i] for i in range(2)]
    unpadded = DataCollatorForPreference(pad_token_id=gpt_oss_tokenizer.pad_token_id, max_length=256)(examples)
    assert unpadded["input_ids"].shape[1] % 128 != 0  # negative control: what the phase trained on before
