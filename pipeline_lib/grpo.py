"""Phase 4: GRPO on the coding-agent LoRA policy with execution rewards, through TRL's GRPOTrainer.

    script_args, args = parse (GRPOScriptArguments, GRPOPhaseConfig)      # scripts/18_grpo_rl.py
    tasks = load_train_tasks(script_args.task_source, script_args.language)
    trainer = build_grpo_trainer(policy, tokenizer, prompt_dataset(tasks), args, [ExecutionReward(tasks)])

What this module adds to TRL, and why:
- Prompts are the task rows of scripts/16_generate_mutations.py rendered by ``agent_tasks.task_prompt`` (the buggy
  file read, the failing test run, the tools, under the coding-agent developer prompt Phase 2 trained with), as
  plain Harmony text ending ``<|start|>assistant``: TRL tokenizes plain-text prompts as they are (no chat template,
  no BOS), so the completion is exactly what the rewards parser reads.
- Generation stops at ``<|call|>`` as well as ``<|return|>`` (a tool-call turn ends there); ``ensure_stop_tokens``
  adds whichever the model's generation_config lacks.
- Generation (and whatever else TRL computes without gradients in the same method) runs with eager attention; the
  training forward keeps flex_attention on CUDA. Inductor's no-grad flex kernel failed on the H100 and the H200
  for the merge's probes and IPO's reference pass (NoValidChoicesError, docs/BENCHMARKS.md), and transformers'
  flex wrapper compiles anew whenever the model's training flag changes (transformers 5.17,
  ``WrappedFlexAttention.__init__``), which a rollout between two training steps would do every step.
- The held-out split never trains: ``load_train_tasks`` refuses ``heldout.jsonl``, rows marked ``split: heldout``
  and rows whose id or seed program is in the held-out file beside the task file.
- ``num_generations`` is capped at the completions one optimizer step holds (per-device batch x accumulation):
  the quick-test and tiny profiles (1 x 2, 2 x 1) would otherwise be refused by TRL for a config asking for 8.
- Gate metrics: ``reward_accuracy`` (fraction of completions whose tests pass) is logged per step by the reward
  function (TRL's ``log_metric``); phase_metrics.json holds the mean of its last 10 logged values (the SOFT gate).
- The LoRA-update check is judged against the learning signal: GRPO's advantage is 0 in a group whose completions
  all earned the same reward, so with no such group, no entropy bonus and no KL term the gradient is exactly 0 and
  an unchanged adapter is the right result (reported, not raised). With a signal, an unchanged LoRA tensor or any
  changed base weight fails the phase.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import GRPOConfig

from pipeline_lib import phases
from pipeline_lib.agent_tasks import LANGUAGES, TaskError, load_tasks, render_kwargs, task_prompt_messages
from pipeline_lib.probes import eager_attention
from pipeline_lib.tokenizer import CALL_ID, RETURN_ID

HELDOUT_FILE = "heldout.jsonl"
GATE_WINDOW = 10  # reward_accuracy for the gate: mean of the last 10 logged steps (the loss gates' window)
STOP_IDS = (RETURN_ID, CALL_ID)  # <|return|> ends a final answer, <|call|> a tool call


def default_task_source(language: str) -> str:
    return f"data/{language}/grpo/tasks.jsonl"


@dataclass
class GRPOScriptArguments:
    checkpoint: str = field(default=phases.default_final(phases.IPO), metadata={
        "help": "LoRA adapter folder the policy starts from and keeps training: IPO's final/, or agent SFT's."})
    language: str = field(default="rust", metadata={"help": f"Task language, one of {', '.join(LANGUAGES)}."})
    task_source: str | None = field(default=None, metadata={
        "help": "Task file (JSON Lines, scripts/16_generate_mutations.py); default data/<language>/grpo/tasks.jsonl. "
                "Never the held-out file."})
    base_model: str | None = field(default=None, metadata={
        "help": "Base model the adapter sits on; default: the adapter's base_model_name_or_path (the merged model)."})
    max_tasks: int | None = field(default=None, metadata={"help": "Train on the first N tasks only."})
    developer_prompt: str | None = field(default=None, metadata={
        "help": "Developer message of every prompt; default: the coding-agent prompt Phase 2 trained under "
                "(pipeline_lib.formatters.CODING_AGENT_DEV_PROMPT)."})
    reward_workers: int = field(default=2, metadata={
        "help": "Processes that score completions (sandboxed test runs) in parallel; 0 = in the trainer process."})
    reward_format: float = field(default=0.1, metadata={"help": "Reward weight: well-formed Harmony."})
    reward_applies: float = field(default=0.1, metadata={"help": "Reward weight: the fix parses and applies."})
    reward_compiles: float = field(default=0.1, metadata={"help": "Reward weight: the fixed code compiles."})
    reward_tests: float = field(default=0.6, metadata={"help": "Reward weight: the tests pass."})
    reward_lint: float = field(default=0.1, metadata={"help": "Reward weight: no new lint finding."})
    reward_partial_credit: bool = field(default=False, metadata={
        "help": "Give each stage's weight as soon as it holds (shaped reward); default: 0 unless the tests pass."})

    def __post_init__(self) -> None:
        from pipeline_lib.ipo import adapter_config

        if self.language not in LANGUAGES:
            raise ValueError(f"--language must be one of {', '.join(LANGUAGES)}, got {self.language!r}")
        self.task_source = self.task_source or default_task_source(self.language)
        if Path(self.task_source).name == HELDOUT_FILE:
            raise ValueError(f"--task_source {self.task_source}: the held-out split is for evaluation only "
                             "(scripts/eval_coding_agent.py); train on tasks.jsonl")
        if not Path(self.task_source).is_file():
            raise FileNotFoundError(f"--task_source {self.task_source}: no such file (write it with "
                                    f"scripts/16_generate_mutations.py --language {self.language})")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError(f"--max_tasks must be >= 1, got {self.max_tasks}")
        if self.reward_workers < 0:
            raise ValueError(f"--reward_workers must be >= 0, got {self.reward_workers}")
        self.reward_weights()  # sum to 1, each >= 0: fails here, before a model is loaded
        adapter_config(self.checkpoint)

    def reward_weights(self):
        from pipeline_lib.rewards import RewardWeights

        return RewardWeights(format=self.reward_format, applies=self.reward_applies, compiles=self.reward_compiles,
                             tests=self.reward_tests, lint=self.reward_lint,
                             partial_credit=self.reward_partial_credit)


@dataclass
class GRPOPhaseConfig(GRPOConfig):
    """GRPOConfig with this phase's defaults; configs/grpo.yaml and the CLI override them."""

    output_dir: str = field(default=phases.default_run_dir(phases.GRPO), metadata={"help": "Run folder."})
    # TRL's 1e-6 is for full fine-tuning; LoRA deltas need a larger step (IPO uses the same).
    learning_rate: float = field(default=5e-6, metadata={"help": "AdamW learning rate."})
    # gpt-oss declares 0.9 and TRL adds coef x load-balancing loss; the router is not a LoRA target.
    router_aux_loss_coef: float | None = field(default=0.0, metadata={"help": "MoE load-balancing loss weight."})
    logging_steps: float = field(default=1, metadata={"help": "Log every step (reward_accuracy per step)."})
    save_steps: float = field(default=25, metadata={"help": "Checkpoint every N steps (resume points)."})
    num_generations_requested: int | None = field(default=None, metadata={
        "help": "Set by the script: num_generations before it was capped at the completions per step."})

    def __post_init__(self) -> None:
        if self.generation_batch_size is None:
            per_step = self.per_device_train_batch_size * (self.steps_per_generation or
                                                           self.gradient_accumulation_steps)
            per_step *= int(os.environ.get("WORLD_SIZE", "1"))
            if self.num_generations is not None and self.num_generations > per_step:
                self.num_generations_requested, self.num_generations = self.num_generations, per_step
        super().__post_init__()


# ------------------------------------------------------------------------------------------------------ tasks
def load_train_tasks(path: str | os.PathLike, language: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The training tasks, checked: right language, none of the held-out split (by name, split, id or source)."""
    file = Path(path)
    if file.name == HELDOUT_FILE:
        raise TaskError(f"{file}: the held-out split is never trained on")
    tasks = load_tasks(file, limit)
    heldout_file = file.with_name(HELDOUT_FILE)
    heldout = load_tasks(heldout_file) if heldout_file.is_file() else []
    heldout_ids = {t["id"] for t in heldout}
    heldout_sources = {t["source"] for t in heldout if t.get("source")}
    for number, task in enumerate(tasks, start=1):
        where = f"{file}: task {number} ({task['id']!r})"
        if task["language"] != language:
            raise TaskError(f"{where}: language {task['language']!r}, but --language is {language!r}")
        if task.get("split", "train") != "train":
            raise TaskError(f"{where}: split {task['split']!r}; only split 'train' rows are trained on")
        if task["id"] in heldout_ids:
            raise TaskError(f"{where}: the same id is in {heldout_file} (held out for evaluation)")
        if task.get("source") in heldout_sources:
            raise TaskError(f"{where}: seed program {task['source']!r} is held out in {heldout_file}")
    return tasks


def task_prompt_text(task: dict[str, Any], developer_prompt: str | None = None) -> str:
    """``agent_tasks.task_prompt`` (stored failure excerpt, no execution) with an optional other developer prompt."""
    from pipeline_lib.harmony import encode_harmony_prompt

    kwargs = render_kwargs()
    if developer_prompt is not None:
        kwargs["developer_instructions"] = developer_prompt
    return encode_harmony_prompt(task_prompt_messages(task), **kwargs)


def prompt_dataset(tasks: list[dict[str, Any]], developer_prompt: str | None = None):
    """datasets.Dataset with ``prompt`` (Harmony text ending ``<|start|>assistant``) and ``task_id`` (the reward
    function looks the task up by it)."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [task_prompt_text(t, developer_prompt) for t in tasks],
                              "task_id": [t["id"] for t in tasks]})


FENCE_LANGUAGE = {"python": "python", "rust": "rust", "go": "go", "typescript": "typescript"}


def reference_completion(task: dict[str, Any]) -> str:
    """The task's reference fix as a completion in the whole-file form (a final answer with one fenced block)."""
    fix = task["reference_fix"] if task["reference_fix"].endswith("\n") else task["reference_fix"] + "\n"
    return f"<|channel|>final<|message|>```{FENCE_LANGUAGE[task['language']]}\n{fix}```<|return|>"


def preflight_rewards(reward, tasks: list[dict[str, Any]], count: int = 2) -> list[float]:
    """Score the reference fixes of the first ``count`` tasks through ``reward`` (an ExecutionReward, so through its
    worker processes and the sandbox) before any model is loaded: a missing toolchain or a sandbox that cannot
    run the tests fails here, naming the task, instead of silently paying 0 for every completion."""
    sample = tasks[:count]
    scores = reward.score_batch(sample, [reference_completion(t) for t in sample])
    for task, score in zip(sample, scores, strict=True):
        if not score.tests_passed:
            raise RuntimeError(f"reward preflight: the reference fix of task {task['id']!r} does not pass its tests "
                               f"in the sandbox ({score.error}); output tail: {score.output[-500:]!r}")
    return [s.reward for s in scores]


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- model + trainer
def load_tokenizer(adapter_dir: str, base_model: str):
    """The tokenizer saved beside the adapter, else the base model's, else the offline-built gpt-oss one."""
    from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

    for folder in (adapter_dir, base_model):
        if (Path(folder) / "tokenizer.json").is_file():
            return load_gpt_oss_tokenizer(folder)
    return load_gpt_oss_tokenizer()


def ensure_stop_tokens(model) -> list[int]:
    """Make generation stop at <|return|> and <|call|>; returns the eos ids now set."""
    eos = model.generation_config.eos_token_id
    ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    ids += [i for i in STOP_IDS if i not in ids]
    model.generation_config.eos_token_id = ids
    return ids


def build_grpo_trainer(policy, tokenizer, train_dataset, args: GRPOPhaseConfig, reward_funcs: list,
                       callbacks: list | None = None):
    """GRPOTrainer on the adapter policy (a PeftModel whose "default" adapter trains)."""
    from peft import PeftModel
    from trl import GRPOTrainer

    from pipeline_lib.trl_cpu import install_cpu_logprob_head

    if not isinstance(policy, PeftModel):
        raise TypeError("the GRPO policy must be a PeftModel carrying the agent adapter (ipo.load_adapter_policy)")
    install_cpu_logprob_head()  # CPU only: TRL's log-prob kernel is Triton
    ensure_stop_tokens(policy)
    return _eager_generation(GRPOTrainer)(model=policy, reward_funcs=reward_funcs, args=args,
                                          train_dataset=train_dataset, processing_class=tokenizer,
                                          callbacks=callbacks)


def _eager_generation(trainer_class: type) -> type:
    """``trainer_class`` whose rollout step (TRL's ``_generate_and_score_completions``: generation, and the
    no-grad log-prob passes when its settings ask for them) runs under ``probes.eager_attention``; see the module
    docstring. With this phase's settings (beta 0, generation aligned with accumulation) TRL computes no old or
    reference log-probs there, so no eager number is ever compared with a flex one."""

    class EagerGenerationGRPOTrainer(trainer_class):
        def _generate_and_score_completions(self, inputs):
            with eager_attention(self.accelerator.unwrap_model(self.model)):
                return super()._generate_and_score_completions(inputs)

    return EagerGenerationGRPOTrainer


# ------------------------------------------------------------------------------------------------------ metrics
def _logged(history: list[dict[str, Any]], key: str) -> list[float]:
    return [float(e[key]) for e in history if isinstance(e.get(key), int | float) and math.isfinite(e[key])]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def learning_signal(history: list[dict[str, Any]], *, entropy_coef: float, beta: float) -> bool:
    """Could the gradient have been non-zero? Some group had unequal rewards, or an entropy/KL term was on."""
    return any(v < 1.0 for v in _logged(history, "frac_reward_zero_std")) or entropy_coef != 0 or beta != 0


def grpo_phase_metrics(log_history: list[dict[str, Any]], *, global_step: int, max_steps: int,
                       lora_check: dict[str, Any], resumed_from: str | None, entropy_coef: float, beta: float,
                       **extra: Any) -> dict[str, Any]:
    """phase_metrics.json for the orchestrator (SOFT gate on reward_accuracy)."""
    accuracy = _logged(log_history, "reward_accuracy")
    rewards = _logged(log_history, "reward")
    resumed_step = None
    if resumed_from:
        suffix = Path(resumed_from).name.rsplit("-", 1)[-1]
        resumed_step = int(suffix) if suffix.isdigit() else None
    return {
        "phase": phases.GRPO.name,
        "reward_accuracy": _mean(accuracy[-GATE_WINDOW:]),
        "reward_accuracy_first": accuracy[0] if accuracy else None,
        "reward_accuracy_steps": len(accuracy),
        "reward": _mean(rewards[-GATE_WINDOW:]),
        "reward_first": rewards[0] if rewards else None,
        "frac_reward_zero_std": _mean(_logged(log_history, "frac_reward_zero_std")),
        "loss": _mean(_logged(log_history, "loss")[-GATE_WINDOW:]),
        "completion_mean_length": _mean(_logged(log_history, "completions/mean_length")),
        "learning_signal": learning_signal(log_history, entropy_coef=entropy_coef, beta=beta),
        "global_step": global_step,
        "max_steps": max_steps,
        "resumed_from_checkpoint": resumed_from,
        "resumed_from_step": resumed_step,
        "lora_update_check": lora_check,
        "entropy_coef": entropy_coef,
        "beta": beta,
        **extra,
    }


def check_grpo_outcome(metrics: dict[str, Any]) -> list[str]:
    """Raise LoraUpdateError on a run that cannot be trusted; return warnings for one that learned nothing."""
    from pipeline_lib.checkpoints import resume_problems
    from pipeline_lib.unsloth_utils import LoraUpdateError

    check = metrics["lora_update_check"]
    problems, warnings = [], []
    if check.get("base_changed"):
        problems.append(f"{len(check['base_changed'])} base weights changed")
    if not check["passed"] and not check.get("base_changed"):
        if metrics["learning_signal"]:
            problems.append("LoRA update check: " + "; ".join(check["problems"]))
        else:
            warnings.append("no learning signal: every group's completions earned the same reward (advantage 0) "
                            "and no entropy/KL term is on, so the adapter is unchanged; GRPO learned nothing")
    problems += resume_problems(metrics)
    if metrics["reward_accuracy"] is None:
        problems.append("no reward_accuracy was logged")
    if problems:
        raise LoraUpdateError("grpo finished but is not trustworthy: " + " | ".join(problems))
    return warnings


def summary_line(metrics: dict[str, Any], output_dir: str) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    check = metrics["lora_update_check"]
    return (f"GRPO done: {metrics['global_step']} steps, reward_accuracy {fmt(metrics['reward_accuracy_first'])} -> "
            f"{fmt(metrics['reward_accuracy'])} (avg last {GATE_WINDOW}), reward {fmt(metrics['reward'])}, "
            f"lora changed {check['lora_changed']}/{check['lora_tensors']} -> {Path(output_dir) / 'final'}")

