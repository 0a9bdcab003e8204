"""Whole-run progress lines and their ETA arithmetic (no heavy imports: the orchestrator calls this per phase).

The per-phase estimate comes from the file the orchestrator writes at the start of a run (``TUI_RUN_ESTIMATE``,
``pipeline_lib.orchestrate estimate``); ``pipeline_lib.live`` prints these lines from inside the training phases.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

RUN_ESTIMATE_ENV = "TUI_RUN_ESTIMATE"


def fmt_duration(seconds: float | None) -> str:
    """The one duration format (progress lines, --dry-run estimates, the summary's cost table): 38m00s, 9h12m;
    None (a phase without a measured throughput) is "no measurement"."""
    if seconds is None:
        return "no measurement"
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def read_run_estimate(path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    path = path or os.environ.get(RUN_ESTIMATE_ENV)
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def remaining_after(estimate: dict[str, Any], phase: str) -> tuple[float, list[str]]:
    """(seconds estimated for the phases after ``phase`` that will run, those with no measurement)."""
    order = list(estimate.get("order") or [])
    later = order[order.index(phase) + 1:] if phase in order else []
    seconds, unmeasured = 0.0, []
    for name in later:
        entry = (estimate.get("phases") or {}).get(name) or {}
        if entry.get("action") == "skip":
            continue
        if entry.get("seconds") is None:
            unmeasured.append(name)
        else:
            seconds += float(entry["seconds"])
    return seconds, unmeasured


def progress_line(phase: str, step: int, max_steps: int, tokens_per_second: float | None, elapsed: float,
                  step_seconds: float | None, estimate: dict[str, Any] | None,
                  now: datetime | None = None) -> str:
    order = list((estimate or {}).get("order") or [])
    where = f"phase {order.index(phase) + 1}/{len(order)} {phase}" if phase in order else f"phase {phase}"
    pct = f" ({100 * step / max_steps:.0f}%)" if max_steps > 0 else ""
    parts = [f"[progress] {where}", f"step {step}/{max_steps if max_steps > 0 else '?'}{pct}"]
    parts.append(f"{tokens_per_second:,.0f} tok/s" if tokens_per_second else "tok/s n/a")
    parts.append(f"elapsed {fmt_duration(elapsed)}")
    if step_seconds is None or max_steps <= 0:
        parts.append("phase ETA n/a (no step timed yet)")
        return " | ".join(parts)
    phase_left = (max_steps - step) * step_seconds
    parts.append(f"phase ETA {fmt_duration(phase_left)}")
    if estimate is not None:
        later, unmeasured = remaining_after(estimate, phase)
        total = phase_left + later
        done = (now or datetime.now(timezone.utc)) + timedelta(seconds=total)
        tail = f" + unmeasured {', '.join(unmeasured)}" if unmeasured else ""
        parts.append(f"run ETA {fmt_duration(total)} (~{done:%Y-%m-%d %H:%M} UTC){tail}")
    return " | ".join(parts)
