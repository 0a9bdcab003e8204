"""Phase 4 (GRPO): the CLI and config, the held-out guard, the prompts, and real optimizer steps on the tiny GPT-OSS
with rewards from real sandboxed execution (one completion per group replaced by the reference fix, so rewards
are 1 and 0 and the gradient comes from them), resume, and the outcome check."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest
import torch

from pipeline_lib import grpo
from pipeline_lib.agent_tasks import TaskError

FIXED = ("def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n"
         "    return x\n")
BUGGY = FIXED.replace("x > hi", "x < hi")
TEST = ("import unittest\n\nfrom clamp import clamp\n\n\nclass TestClamp(unittest.TestCase):\n"
        "    def test_inside(self):\n        self.assertEqual(clamp(5, 0, 10), 5)\n\n"
        "    def test_above(self):\n        self.assertEqual(clamp(50, 0, 10), 10)\n")
FAILURE = "FAIL: test_inside (test_clamp.TestClamp.test_inside)\nAssertionError: 10 != 5\nFAILED (failures=1)"
REFERENCE_COMPLETION = f"<|channel|>final<|message|>```python\n{FIXED}```<|return|>"


def task(i: int, **overrides) -> dict:
    row = {"id": f"python-clamp-flip_comparison-{i}", "language": "python",
           "files": {"clamp.py": BUGGY, "test_clamp.py": TEST}, "buggy_file": "clamp.py",
           "test_command": ["python", "-m", "unittest", "-q", "test_clamp"], "reference_fix": FIXED,
           "operator": "flip_comparison", "source": f"clamp{i}", "split": "train", "failure": FAILURE}
    row.update(overrides)
    return row


def write_tasks(path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def restore_trl_lm_head():
    """install_cpu_logprob_head sets a TRL module global; leave it as found for the other test files."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._ChunkedLogProbFunction
    yield
    trl_utils._ChunkedLogProbFunction = original


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> str:
    return write_tasks(tmp_path_factory.mktemp("data") / "python" / "grpo" / "tasks.jsonl",
                       [task(i) for i in range(3)])


@pytest.fixture(scope="module")
def policy_adapter(tiny_model_dir, tmp_path_factory):
    """An r=8 LoRA adapter on q/k/v/o + experts with seeded random A and B (the agent-SFT/IPO adapter GRPO
    continues; lora_B != 0 so every LoRA tensor gets a gradient from the first step)."""
    from peft import LoraConfig, get_peft_model

    from pipeline_lib.modeling import load_causal_lm
    from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

    out = tmp_path_factory.mktemp("agent_sft_ipo") / "final"
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
    return out


@pytest.fixture(scope="module")
def adapter_stub(tmp_path_factory):
    """Only what argument parsing checks (an adapter_config.json): the CLI tests load no model."""
    folder = tmp_path_factory.mktemp("adapter_stub")
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(folder)}))
    return folder


def script_parse_args(repo_root):
    return runpy.run_path(str(repo_root / "scripts" / "18_grpo_rl.py"), run_name="grpo_script")["parse_args"]


# ------------------------------------------------------------------------------------------- CLI and config
def test_writeup_flags_and_yaml(repo_root, adapter_stub, task_file):
    parse_args = script_parse_args(repo_root)
    script_args, args = parse_args(["--checkpoint", str(adapter_stub), "--per_device_train_batch_size", "1",
                                    "--gradient_accumulation_steps", "16", "--max_steps", "7", "--task_source",
                                    task_file, "--output_dir", "runs/grpo", "--language", "python"])
    assert (script_args.checkpoint, script_args.task_source, script_args.language) == (
        str(adapter_stub), task_file, "python")
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.max_steps, args.output_dir) == (
        1, 16, 7, "runs/grpo")
    # YAML-only values (configs/grpo.yaml; the dataclass defaults differ)
    assert args.num_generations == 8 and args.num_generations_requested is None and args.generation_batch_size == 16
    assert args.max_completion_length == 2048 and args.save_total_limit == 3 and args.lr_scheduler_type == "constant"
    assert args.beta == 0.0 and args.router_aux_loss_coef == 0.0 and script_args.developer_prompt is None
    assert script_args.reward_weights().terms() == {"format": 0.1, "applies": 0.1, "compiles": 0.1, "tests": 0.6,
                                                    "lint": 0.1}
    # quick test (1 x 2): 8 generations cannot fit in one step's 2 completions -> capped to 2, recorded
    _, args = parse_args(["--checkpoint", str(adapter_stub), "--task_source", task_file, "--language", "python",
                          "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2"])
    assert (args.num_generations, args.num_generations_requested, args.generation_batch_size) == (2, 8, 2)


def test_bad_flags_fail_clearly(repo_root, adapter_stub, task_file, tmp_path, capsys):
    parse_args = script_parse_args(repo_root)
    base = ["--checkpoint", str(adapter_stub), "--task_source", task_file, "--language", "python"]
    with pytest.raises(ValueError, match="--num_generation_count"):
        parse_args([*base, "--num_generation_count", "4"])
    with pytest.raises(ValueError, match="--language must be one of"):
        parse_args([*base[:-1], "cobol"])
    with pytest.raises(FileNotFoundError, match="--task_source .*no such file"):
        parse_args([*base[:3], str(tmp_path / "tasks.jsonl"), *base[4:]])
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        parse_args(["--checkpoint", str(tmp_path), *base[2:]])
    with pytest.raises(ValueError, match="sum to 1"):
        parse_args([*base, "--reward_tests", "0.9"])
    with pytest.raises(ValueError, match="held-out split is for evaluation only"):
        parse_args([*base[:3], str(tmp_path / "heldout.jsonl"), *base[4:]])
    main = runpy.run_path(str(repo_root / "scripts" / "18_grpo_rl.py"), run_name="grpo_script")["main"]
    with pytest.raises(SystemExit, match=r"^18_grpo_rl.py: .*not used by the HfArgumentParser: \['--bogus', '1'\]"):
        main([*base, "--bogus", "1"])
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--checkpoint", "--per_device_train_batch_size", "--gradient_accumulation_steps", "--max_steps",
                 "--task_source", "--output_dir", "--language", "--num_generations", "--developer_prompt",
                 "--reward_tests"):
        assert flag in help_text, flag
    # the script's own account of Phase 4 heads --help, line breaks kept (TrlParser alone printed only the flags)
    assert "Phase 4: GRPO of the coding-agent LoRA policy with execution rewards" in help_text
    assert "\n    python3 scripts/18_grpo_rl.py --config configs/grpo.yaml --language rust\n" in help_text
    assert "(default: 0.6)" in help_text  # the flags still show their defaults (configs/grpo.yaml's reward_tests)


# ----------------------------------------------------------------------------------------------- tasks
def test_heldout_never_trains(tmp_path):
    folder = tmp_path / "python" / "grpo"
    train = write_tasks(folder / "tasks.jsonl", [task(0), task(1)])
    assert [t["id"] for t in grpo.load_train_tasks(train, "python")] == [task(0)["id"], task(1)["id"]]
    assert len(grpo.load_train_tasks(train, "python", limit=1)) == 1

    write_tasks(folder / "heldout.jsonl", [task(7, split="heldout")])
    assert len(grpo.load_train_tasks(train, "python")) == 2  # unrelated held-out rows: fine
    with pytest.raises(TaskError, match="held-out split is never trained on"):
        grpo.load_train_tasks(folder / "heldout.jsonl", "python")
    write_tasks(folder / "heldout.jsonl", [task(1, split="heldout")])
    with pytest.raises(TaskError, match=r"task 2 .*same id is in .*heldout\.jsonl"):
        grpo.load_train_tasks(train, "python")
    write_tasks(folder / "heldout.jsonl", [task(9, split="heldout", source="clamp0")])
    with pytest.raises(TaskError, match=r"task 1 .*seed program 'clamp0' is held out"):
        grpo.load_train_tasks(train, "python")

    other = tmp_path / "other"
    with pytest.raises(TaskError, match=r"task 2 .*split 'heldout'"):
        grpo.load_train_tasks(write_tasks(other / "a.jsonl", [task(0), task(1, split="heldout")]), "python")
    with pytest.raises(TaskError, match=r"language 'python', but --language is 'rust'"):
        grpo.load_train_tasks(write_tasks(other / "b.jsonl", [task(0)]), "rust")


def test_prompt_is_harmony_up_to_assistant(gpt_oss_tokenizer):
    from pipeline_lib.agent_tasks import task_prompt
    from pipeline_lib.formatters import CODING_AGENT_DEV_PROMPT
    from pipeline_lib.tokenizer import BOS_ID

    dataset = grpo.prompt_dataset([task(0), task(1)])
    assert dataset.column_names == ["prompt", "task_id"] and dataset["task_id"] == [task(0)["id"], task(1)["id"]]
    prompt = dataset[0]["prompt"]
    assert prompt == task_prompt(task(0))  # the same prompt evaluation and trajectories use
    assert prompt.endswith("<|start|>assistant") and CODING_AGENT_DEV_PROMPT in prompt
    assert BUGGY in prompt and FAILURE in prompt and "apply_patch" in prompt
    ids = gpt_oss_tokenizer(prompt)["input_ids"]  # what TRL does with a plain-text prompt
    assert BOS_ID not in ids and gpt_oss_tokenizer.decode(ids) == prompt
    other = grpo.prompt_dataset([task(0)], developer_prompt="Fix bugs tersely.")[0]["prompt"]
    assert "Fix bugs tersely." in other and CODING_AGENT_DEV_PROMPT not in other


def test_reward_preflight_runs_the_reference_fix():
    from pipeline_lib.rewards import ExecutionReward

    reward = ExecutionReward([task(0)], workers=0)
    assert grpo.reference_completion(task(0)) == REFERENCE_COMPLETION
    assert grpo.preflight_rewards(reward, [task(0)]) == [1.0]
    wrong = task(1, reference_fix=FIXED.replace("return hi", "return lo"))  # a "fix" whose tests fail
    with pytest.raises(RuntimeError, match=r"reference fix of task 'python-clamp-flip_comparison-1' does not pass"):
        grpo.preflight_rewards(reward, [task(0), wrong])


def test_stop_tokens_added():
    from transformers import GenerationConfig

    from pipeline_lib.tokenizer import CALL_ID, RETURN_ID

    class Model:
        generation_config = GenerationConfig(eos_token_id=RETURN_ID)

    assert grpo.ensure_stop_tokens(Model()) == [RETURN_ID, CALL_ID]
    assert grpo.ensure_stop_tokens(Model()) == [RETURN_ID, CALL_ID]  # idempotent


def test_rollouts_run_eager_and_training_keeps_flex(tiny_model_dir):
    """TRL's rollout step (generation, no gradients) runs with eager attention; the training forward keeps flex.
    On CUDA inductor's no-grad flex kernel failed on the H100/H200 (merge probes, IPO's reference pass).
    Control: the same method of the unwrapped class sees flex."""
    import types

    from pipeline_lib.modeling import load_causal_lm

    model = load_causal_lm(tiny_model_dir)
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")]
    for config in configs:
        config._attn_implementation = "flex_attention"
    seen = []

    class FakeTrainer:  # the two members the wrapper reads, and the method it wraps
        def __init__(self, model):
            self.model = model
            self.accelerator = types.SimpleNamespace(unwrap_model=lambda m: m)

        def _generate_and_score_completions(self, inputs):
            seen.append({c._attn_implementation for c in configs})
            return inputs

    assert grpo._eager_generation(FakeTrainer)(model)._generate_and_score_completions("batch") == "batch"
    assert seen == [{"eager"}]
    assert {c._attn_implementation for c in configs} == {"flex_attention"}  # restored for training
    FakeTrainer(model)._generate_and_score_completions("batch")
    assert seen[-1] == {"flex_attention"}


def test_outcome_check():
    from pipeline_lib.unsloth_utils import LoraUpdateError

    unchanged = {"passed": False, "problems": ["24 LoRA tensors unchanged"], "base_changed": []}
    base = {"reward_accuracy": 0.0, "global_step": 2, "max_steps": 2, "resumed_from_step": None,
            "lora_update_check": unchanged}
    assert "no learning signal" in grpo.check_grpo_outcome({**base, "learning_signal": False})[0]
    with pytest.raises(LoraUpdateError, match="LoRA tensors unchanged"):
        grpo.check_grpo_outcome({**base, "learning_signal": True})
    changed_base = {"passed": False, "problems": ["1 base weights changed"], "base_changed": ["w"]}
    with pytest.raises(LoraUpdateError, match="base weights changed"):
        grpo.check_grpo_outcome({**base, "learning_signal": False, "lora_update_check": changed_base})
    ok = {"passed": True, "problems": [], "base_changed": []}
    assert grpo.check_grpo_outcome({**base, "learning_signal": True, "lora_update_check": ok}) == []
    with pytest.raises(LoraUpdateError, match="resume trained nothing"):
        grpo.check_grpo_outcome({**base, "learning_signal": True, "lora_update_check": ok, "resumed_from_step": 2,
                                 "max_steps": 4})
    history = [{"frac_reward_zero_std": 1.0}, {"frac_reward_zero_std": 0.5}]
    assert grpo.learning_signal(history, entropy_coef=0.0, beta=0.0)
    assert not grpo.learning_signal(history[:1], entropy_coef=0.0, beta=0.0)
    assert grpo.learning_signal(history[:1], entropy_coef=0.01, beta=0.0)


# ------------------------------------------------------------------------------------ real training
class RecordingReward:
    """Delegates to ExecutionReward and keeps every (task id, completion ids, reward) TRL asked about."""

    __name__ = "execution_reward"

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def __call__(self, **kwargs):
        rewards = self.inner(**kwargs)
        self.calls.append({"task_id": list(kwargs["task_id"]), "completion_ids": [list(c) for c in
                                                                                  kwargs["completion_ids"]],
                           "rewards": rewards, "passed": [s.tests_passed for s in self.inner.last_scores]})
        return rewards


def train_in_process(policy_adapter, task_file, tokenizer, out, *, inject: bool):
    """Two GRPO steps of 2 completions (one task x 2 generations); with ``inject`` the second completion of every
    group is replaced by the reference fix after generation, so the group's rewards are (random, 1)."""
    from pipeline_lib.ipo import load_adapter_policy
    from pipeline_lib.modeling import detect_precision
    from pipeline_lib.rewards import ExecutionReward
    from pipeline_lib.unsloth_utils import snapshot_parameters, verify_lora_updates

    tasks = grpo.load_train_tasks(task_file, "python")
    args = grpo.GRPOPhaseConfig(output_dir=str(out), per_device_train_batch_size=2, gradient_accumulation_steps=1,
                                num_generations=2, max_completion_length=8, max_steps=2, learning_rate=1e-4,
                                save_strategy="no", report_to="none", seed=0, **detect_precision().trainer_kwargs())
    reward = RecordingReward(ExecutionReward(tasks, workers=0))
    trainer = grpo.build_grpo_trainer(load_adapter_policy(policy_adapter), tokenizer, grpo.prompt_dataset(tasks),
                                      args, [reward])
    assert type(trainer).__name__ == "EagerGenerationGRPOTrainer"  # rollouts eager (test_rollouts_run_eager_...)
    reference_ids = tokenizer(REFERENCE_COMPLETION)["input_ids"]
    generate = trainer._generate_single_turn

    def generate_then_inject(*a, **kw):
        completion_ids, logprobs = generate(*a, **kw)
        return [reference_ids if i % 2 else ids for i, ids in enumerate(completion_ids)], logprobs

    if inject:
        trainer._generate_single_turn = generate_then_inject
    before = snapshot_parameters(trainer.model)
    trainer.train()
    return trainer, reward, verify_lora_updates(before, trainer.model)


@pytest.mark.slow
def test_grpo_steps_from_execution_rewards(policy_adapter, task_file, gpt_oss_tokenizer, tmp_path):
    from pipeline_lib.harmony import harmony_encoding
    from pipeline_lib.rewards import score_completion

    trainer, reward, lora = train_in_process(policy_adapter, task_file, gpt_oss_tokenizer, tmp_path / "a",
                                             inject=True)
    assert trainer.state.global_step == 2 and len(reward.calls) == 2
    tasks = {t["id"]: t for t in grpo.load_train_tasks(task_file, "python")}
    logged = [e for e in trainer.state.log_history if "reward_accuracy" in e]
    assert len(logged) == 2
    for call, entry in zip(reward.calls, logged, strict=True):
        # What TRL logged is what the sandbox scored ...
        assert entry["reward_accuracy"] == pytest.approx(sum(call["passed"]) / len(call["passed"]))
        assert entry["reward"] == pytest.approx(sum(call["rewards"]) / len(call["rewards"]))
        assert call["completion_ids"][1] == gpt_oss_tokenizer(REFERENCE_COMPLETION)["input_ids"]
        assert call["passed"][1] and call["rewards"][1] == 1.0  # the reference fix passes for real
        assert entry["frac_reward_zero_std"] < 1.0  # ... and the group's rewards differ: a learning signal
        # ... and an independent re-score of the same text gives the same rewards.
        for task_id, ids, value in zip(call["task_id"], call["completion_ids"], call["rewards"], strict=True):
            text = harmony_encoding().decode(ids)
            assert score_completion(tasks[task_id], text).reward == pytest.approx(value)
    assert lora["passed"] and lora["expert_lora_changed"] == lora["expert_lora_tensors"] > 0, lora

    # Negative control: the same run without the injected fix earns 0 everywhere (a random tiny model), every
    # group's rewards are equal, the advantage is 0 and so is the gradient: no LoRA tensor moves.
    trainer, reward, lora = train_in_process(policy_adapter, task_file, gpt_oss_tokenizer, tmp_path / "b",
                                             inject=False)
    assert trainer.state.global_step == 2
    assert all(r == 0.0 for call in reward.calls for r in call["rewards"])
    assert [e["frac_reward_zero_std"] for e in trainer.state.log_history if "frac_reward_zero_std" in e] == [1, 1]
    assert not lora["passed"] and lora["lora_changed"] == 0


@pytest.mark.slow
def test_script_trains_saves_resumes_and_gates(repo_root, policy_adapter, task_file, tmp_path):
    from pipeline_lib.gates import check_gate, load_gate_specs

    out = tmp_path / "agent_sft_grpo"
    # The tiny demo's settings: 2 generations of <= 16 tokens, the entropy bonus (a random model earns reward 0,
    # so the bonus is what moves the adapter), 2 reward worker processes.
    command = [sys.executable, str(repo_root / "scripts" / "18_grpo_rl.py"), "--checkpoint", str(policy_adapter),
               "--task_source", task_file, "--language", "python", "--per_device_train_batch_size", "2",
               "--gradient_accumulation_steps", "1", "--output_dir", str(out), "--max_completion_length", "16",
               "--entropy_coef", "0.01", "--save_steps", "1", "--reward_workers", "2"]
    first = subprocess.run([*command, "--max_steps", "1"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.strip().splitlines()[-1].startswith("GRPO done: 1 steps")
    final = out / "final"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "trainer_state.json",
                 "provenance.json", "phase_metrics.json"):
        assert (final / name).is_file(), name

    main = runpy.run_path(command[1], run_name="grpo_script")["main"]
    metrics = main([*command[2:], "--max_steps", "2", "--resume_from_checkpoint", str(out / "checkpoint-1")])
    state = json.loads((final / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [e["step"] for e in state["log_history"] if "reward" in e] == [1, 2]
    assert metrics["resumed_from_step"] == 1 and metrics["global_step"] == 2
    assert metrics["reward_accuracy"] == 0.0 and metrics["reward_accuracy_steps"] == 2
    assert metrics["num_generations"] == 2 and metrics["sandbox"]["available"]
    assert metrics["lora_update_check"]["passed"] and metrics["learning_signal"]
    provenance = json.loads((final / "provenance.json").read_text())
    assert provenance["config"]["script"]["task_source"] == task_file and provenance["metrics"]["phase"] == "grpo"

    gate = check_gate(load_gate_specs("tiny")["grpo"], out)  # what the orchestrator's SOFT gate reads
    assert gate.value == 0.0 and not gate.passed and not gate.hard_failure
