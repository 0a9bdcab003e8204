"""TRL GRPOTrainer reward function: a batch of completions scored in parallel worker processes.

    reward = ExecutionReward(tasks_by_id, weights=RewardWeights.from_mapping(cfg), workers=4)
    trainer = GRPOTrainer(..., reward_funcs=[reward], train_dataset=ds)   # ds has a "task_id" (or "task") column
    ...
    reward.close()

TRL calls ``reward(prompts=..., completions=..., completion_ids=..., **dataset_columns, log_metric=...)``.
The task of each completion comes from a dataset column: ``task`` (the row as a dict or JSON string), ``task_json``
(JSON string) or ``task_id`` (looked up in ``tasks``). The completion text: TRL decodes ``completions`` with
``skip_special_tokens=True``, which deletes the Harmony markup (``<|channel|>`` ... ``<|call|>``), so when
``completion_ids`` are given they are decoded again with openai_harmony's o200k_harmony encoding (the GPT-OSS vocab),
special tokens kept; strings or ``[{"role": "assistant", "content": ...}]`` are used as they are otherwise.

Workers are spawned (the trainer holds CUDA and torch threads, which must not be forked), so the calling script
needs the usual ``if __name__ == "__main__":`` guard. One bad completion never raises: a scorer error, a crashed or
hung worker gives that completion 0.0 and an ``error`` (the pool is rebuilt). Only configuration errors raise (no
task column, unknown task id, no sandbox).
Logged through TRL's ``log_metric``: ``reward_accuracy`` (fraction whose tests pass; the Phase 4 SOFT gate) and
the fraction at each stage (``execution/format_ok``, ``/parsed``, ``/applied``, ``/compiles``).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_lib.rewards.score import DEFAULT_LIMITS, DEFAULT_WEIGHTS, RewardWeights, Score, score_completion
from pipeline_lib.sandbox import Limits, SandboxUnavailable, isolation_report

# Queueing + Python start-up + parsing on top of each run's own wall limit before a worker counts as hung.
WORKER_SLACK_S = 60.0


class ExecutionReward:
    def __init__(self, tasks: Mapping[str, dict] | Sequence[dict] | None = None, *,
                 weights: RewardWeights = DEFAULT_WEIGHTS, limits: Limits = DEFAULT_LIMITS, workers: int = 2,
                 isolation: bool = True) -> None:
        """``workers=0`` scores in this process (tests, debugging). ``isolation=False``: tests' controls only."""
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if isinstance(tasks, Mapping):
            self.tasks = dict(tasks)
        else:
            self.tasks = {task["id"]: task for task in tasks or []}
        self.weights, self.limits, self.workers, self.isolation = weights, limits, workers, isolation
        self.__name__ = "execution_reward"  # TRL names the reward column after it
        self.isolation_report = isolation_report() if isolation else {"enabled": False}
        if isolation and not self.isolation_report.get("available"):
            raise SandboxUnavailable(self.isolation_report.get("reason", "sandbox unavailable"))
        self._pool: cf.ProcessPoolExecutor | None = None
        self.last_scores: list[Score] = []

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        count = len(completions if completions is not None else completion_ids or [])
        tasks = [self._task(kwargs, i) for i in range(count)]
        items = [completion_ids[i] if completion_ids is not None else _text(completions[i]) for i in range(count)]
        scores = self.score_batch(tasks, items)
        self.last_scores = scores
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and scores:
            log_metric("reward_accuracy", sum(s.tests_passed for s in scores) / len(scores))
            for stage in ("format_ok", "parsed", "applied", "compiles"):
                log_metric(f"execution/{stage}", sum(bool(getattr(s, stage)) for s in scores) / len(scores))
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):
            log_extra("execution_error", [s.error or "" for s in scores])
        return [s.reward for s in scores]

    def score_batch(self, tasks: Sequence[dict], items: Sequence[str | Sequence[int]]) -> list[Score]:
        """Score ``items`` (text, or token ids to decode) against ``tasks``; one Score each, never raising."""
        if self.workers == 0:
            return [_score_safely(t, c, self.weights, self.limits, self.isolation) for t, c in zip(tasks, items,
                                                                                                   strict=True)]
        pool = self._get_pool()
        futures = [pool.submit(_score_safely, t, list(c) if not isinstance(c, str) else c, self.weights, self.limits,
                               self.isolation) for t, c in zip(tasks, items, strict=True)]
        rounds = -(-len(futures) // self.workers)
        done, _ = cf.wait(futures, timeout=rounds * (self.limits.wall_seconds + WORKER_SLACK_S))
        scores = []
        broken = False
        for future in futures:
            if future not in done:
                scores.append(Score(reward=0.0, error="scorer worker did not answer in time"))
                broken = True
                continue
            try:
                scores.append(future.result())
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # BrokenProcessPool: a worker died (e.g. killed by the OOM killer)
                scores.append(Score(reward=0.0, error=f"scorer worker failed: {type(exc).__name__}: {exc}"))
                broken = True
        if broken:
            self._reset_pool()
        fatal = next((s.error for s in scores if s.error and s.error.startswith("sandbox unavailable")), None)
        if fatal:
            raise SandboxUnavailable(fatal)
        return scores

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the trainer process holds CUDA and torch threads, which must not be forked
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def _reset_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    def _task(self, columns: Mapping[str, Any], index: int) -> dict:
        if "task" in columns:
            task = columns["task"][index]
            return json.loads(task) if isinstance(task, str) else task
        if "task_json" in columns:
            return json.loads(columns["task_json"][index])
        if "task_id" in columns:
            task_id = columns["task_id"][index]
            if task_id not in self.tasks:
                raise KeyError(f"task_id {task_id!r} is not among the {len(self.tasks)} tasks of ExecutionReward")
            return self.tasks[task_id]
        raise ValueError("ExecutionReward needs a dataset column 'task', 'task_json' or 'task_id'; got "
                         f"{sorted(k for k in columns if k not in ('log_metric', 'log_extra', 'trainer_state'))}")

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _score_safely(task: dict, completion: str | Sequence[int], weights: RewardWeights, limits: Limits,
                  isolation: bool) -> Score:
    """Worker entry point: any failure becomes a 0-reward Score with the reason."""
    try:
        if not isinstance(completion, str):
            from pipeline_lib.harmony import harmony_encoding

            completion = harmony_encoding().decode(list(completion))
        return score_completion(task, completion, weights, limits, isolation=isolation)
    except SandboxUnavailable as exc:
        return Score(reward=0.0, error=f"sandbox unavailable: {exc}")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # one bad completion (or a scorer bug on it; pyo3 panics too) must not stop training
        return Score(reward=0.0, error=f"scorer error: {type(exc).__name__}: {exc}")
