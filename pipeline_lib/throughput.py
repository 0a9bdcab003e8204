"""Training throughput and memory, measured inside the Trainer loop (used by every training phase and the benches).

Tokens come from ``TrainerState.num_input_tokens_seen`` (set ``include_num_input_tokens_seen="non_padding"``), so
padding is not counted as work. Step times are wall-clock between ``on_step_begin`` and ``on_step_end`` after a
CUDA synchronize; the first ``warmup_steps`` (compilation, autotuning: 10-45 s on the H100) are
excluded and the median after warm-up is reported (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from transformers import TrainerCallback


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class ThroughputCallback(TrainerCallback):
    def __init__(self, warmup_steps: int = 1) -> None:
        self.warmup_steps = warmup_steps
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []
        self._t0 = 0.0
        self._tokens0 = 0
        self._train_start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._train_start = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        _sync()
        self._t0 = time.perf_counter()
        self._tokens0 = int(getattr(state, "num_input_tokens_seen", 0) or 0)

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.step_seconds.append(time.perf_counter() - self._t0)
        self.step_tokens.append(int(getattr(state, "num_input_tokens_seen", 0) or 0) - self._tokens0)

    def summary(self) -> dict[str, Any]:
        import torch

        timed = list(zip(self.step_seconds, self.step_tokens, strict=True))[self.warmup_steps:]
        rates = [tok / sec for sec, tok in timed if sec > 0 and tok > 0]
        out: dict[str, Any] = {
            "steps_timed": len(rates),
            "warmup_steps_excluded": min(self.warmup_steps, len(self.step_seconds)),
            "first_step_seconds": round(self.step_seconds[0], 3) if self.step_seconds else None,
            "median_step_seconds": round(statistics.median(s for s, _ in timed), 4) if timed else None,
            "tokens_per_second_median": round(statistics.median(rates), 1) if rates else None,
            "tokens_per_step_median": int(statistics.median(t for _, t in timed)) if timed else None,
            "train_wall_seconds": round(time.perf_counter() - self._train_start, 2) if self._train_start else None,
        }
        if torch.cuda.is_available():
            out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
            out["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 1e9, 2)
            out["device_name"] = torch.cuda.get_device_name(0)
        return out
