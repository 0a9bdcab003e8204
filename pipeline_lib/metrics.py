"""Gate metrics that each phase writes for the orchestrator (read back by pipeline_lib.gates)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pipeline_lib.provenance import write_json_atomic

PHASE_METRICS_FILE = "phase_metrics.json"


def loss_history(trainer_state: dict[str, Any], key: str = "loss") -> list[tuple[int, float]]:
    """(step, value) of every logged entry that has ``key`` (train loss by default)."""
    out = []
    for entry in trainer_state.get("log_history", []):
        if key in entry and isinstance(entry[key], int | float) and math.isfinite(entry[key]):
            out.append((int(entry.get("step", 0)), float(entry[key])))
    return out


def latest_trainer_state(run_dir: str | os.PathLike) -> Path | None:
    """Newest trainer_state.json under run_dir: final/ first, else the highest checkpoint-N/."""
    run = Path(run_dir)
    if (run / "final" / "trainer_state.json").is_file():
        return run / "final" / "trainer_state.json"
    ckpts = sorted(run.glob("checkpoint-*/trainer_state.json"),
                   key=lambda p: int(p.parent.name.split("-")[-1]) if p.parent.name.split("-")[-1].isdigit() else -1)
    return ckpts[-1] if ckpts else None


def get_avg_loss(run_dir: str | os.PathLike, n: int = 10, key: str = "loss") -> float | None:
    """Average of the last ``n`` logged losses (writeup §8 ``get_avg_loss``); None when nothing was logged."""
    state_path = latest_trainer_state(run_dir)
    if state_path is None:
        return None
    history = loss_history(json.loads(state_path.read_text()), key)
    if not history:
        return None
    tail = [v for _, v in history[-n:]]
    return sum(tail) / len(tail)


def write_phase_metrics(out_dir: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    return write_json_atomic(Path(out_dir) / PHASE_METRICS_FILE, metrics)


def read_phase_metrics(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(out_dir) / PHASE_METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
