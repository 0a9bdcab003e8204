"""Live view of a training phase: metrics for TensorBoard / W&B and whole-run progress lines with an ETA.

Every training phase adds ``LiveMetricsCallback`` to its trainer (first in the callback list, so the reporting
integrations see what it adds) and calls ``configure_reporting`` before building its TrainingArguments' trainer:

* each log record gains ``tokens_per_second`` (non-padding tokens since the previous record over wall time) and
  ``peak_gpu_memory_gb`` (CUDA only), next to the trainer's loss, learning rate and grad norm; IPO's reward margins
  and GRPO's rewards are logged by TRL itself. With ``report_to: tensorboard`` (the configs' default) they land in
  ``logs/tensorboard/<phase>/`` (``tensorboard --logdir logs/tensorboard``);
* every ``interval`` seconds (and at the first step) it prints one line the pipeline log carries::

    [progress] phase 2/7 tool_calling_sft | step 120/500 (24%) | 4,410 tok/s | elapsed 12m03s | phase ETA 38m00s |
    run ETA 9h12m (~2026-11-29 07:10 UTC)

  The run ETA adds the estimates of the phases still to come, from the file the orchestrator writes at the start of
  a run (``TUI_RUN_ESTIMATE``: ``pipeline_lib.estimate``'s per-phase seconds); without it the line stops at the
  phase ETA.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from pipeline_lib.progress import RUN_ESTIMATE_ENV, fmt_duration, progress_line, read_run_estimate, remaining_after

__all__ = ["RUN_ESTIMATE_ENV", "LiveMetricsCallback", "add_live_metrics", "configure_reporting", "fmt_duration",
           "progress_line", "read_run_estimate", "remaining_after"]

PROGRESS_INTERVAL_ENV = "TUI_PROGRESS_INTERVAL"  # seconds between progress lines; the orchestrator's default is 300
DEFAULT_INTERVAL = 300.0


def logs_dir_for(output_dir: str | os.PathLike) -> Path:
    """``<workdir>/logs`` for a run folder ``<workdir>/checkpoints/<run>``, else ``logs`` under the current folder."""
    out = Path(output_dir).resolve()
    return out.parent.parent / "logs" if out.parent.name == "checkpoints" else Path("logs").resolve()


def configure_reporting(phase: str, report_to: list[str] | str | None, output_dir: str | os.PathLike) -> Path | None:
    """Point TensorBoard at ``<workdir>/logs/tensorboard/<phase>`` unless TENSORBOARD_LOGGING_DIR is set.

    transformers 5.x reads the folder from that variable only (TrainingArguments has no logging_dir any more), when
    the Trainer is built: call this before. Returns the folder, or None when TensorBoard is not in ``report_to``.
    """
    targets = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "tensorboard" not in targets and "all" not in targets:
        return None
    folder = Path(os.environ.get("TENSORBOARD_LOGGING_DIR") or logs_dir_for(output_dir) / "tensorboard" / phase)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)
    return folder


class LiveMetricsCallback(TrainerCallback):
    """Adds tokens/s and peak GPU memory to each log record; prints a progress line every ``interval`` seconds."""

    def __init__(self, phase: str, interval: float | None = None, estimate: dict[str, Any] | None = None,
                 printer=print) -> None:
        self.phase = phase
        env_interval = os.environ.get(PROGRESS_INTERVAL_ENV)
        self.interval = float(interval if interval is not None else env_interval or DEFAULT_INTERVAL)
        self.estimate = estimate if estimate is not None else read_run_estimate()
        self.printer = printer
        self.lines: list[str] = []
        self._t0 = 0.0
        self._last_print = None
        self._last_log = (0.0, 0)
        self._step_t = 0.0
        self._step_seconds: list[float] = []
        self._rate: float | None = None

    @staticmethod
    def _tokens(state) -> int:
        return int(getattr(state, "num_input_tokens_seen", 0) or 0)

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()
        self._last_log = (self._t0, self._tokens(state))

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self._step_seconds.append(now - self._step_t)
        if self._last_print is None or now - self._last_print >= self.interval:
            self._last_print = now
            self.emit(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs and "train_loss" not in logs and "reward" not in logs:
            return
        now, tokens = time.perf_counter(), self._tokens(state)
        if not tokens and isinstance(logs.get("num_tokens"), int | float):
            # DPO/GRPO do not count num_input_tokens_seen; TRL logs its own cumulative num_tokens for them
            tokens = int(logs["num_tokens"])
        t_prev, tokens_prev = self._last_log
        if now > t_prev and tokens > tokens_prev:
            self._rate = (tokens - tokens_prev) / (now - t_prev)
            logs["tokens_per_second"] = round(self._rate, 1)
        self._last_log = (now, tokens)
        import torch

        if torch.cuda.is_available():
            logs["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)

    def on_train_end(self, args, state, control, **kwargs):
        self.emit(state)

    def emit(self, state) -> str:
        # the first step compiles (10-90 s on a GPU): the ETA uses the median of the steps after it when there are
        timed = self._step_seconds[1:] or self._step_seconds
        step_seconds = statistics.median(timed) if timed else None
        line = progress_line(self.phase, int(state.global_step), int(state.max_steps or 0), self._rate,
                             time.perf_counter() - self._t0, step_seconds, self.estimate)
        self.lines.append(line)
        self.printer(line, flush=True) if self.printer is print else self.printer(line)
        return line


def add_live_metrics(trainer, phase: str) -> LiveMetricsCallback:
    """Put the callback first, so TensorBoard/W&B callbacks (added by the Trainer) see the fields it adds."""
    callback = LiveMetricsCallback(phase)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback
