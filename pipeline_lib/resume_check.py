"""Does a phase resumed from a checkpoint continue the run it was cut from, optimizer state included?

Three runs of the same training phase on the same data (``scripts/check_optimizer_resume.py`` drives them):

- ``straight``: ``--max_steps N --save_steps 2``, never interrupted;
- ``resumed``: a copy of straight's checkpoint-2 resumed to step N (what the orchestrator does after a crash);
- ``control``: the same copy without ``optimizer.pt``, resumed to step N. HF Trainer resumes such a checkpoint
  silently with fresh AdamW moments, so its losses after step 3 must move away from straight's: that is what shows
  the comparison can see a lost optimizer state.

The loss at step 3 is computed with checkpoint-2's weights in all three runs; the optimizer state first acts on
step 3's update, so steps 4..N are the ones compared. Written for the 8-bit AdamW of bitsandbytes
(``--optim adamw_bnb_8bit``), whose state lives in its own tensors (``state1``/``state2`` + quantization maps),
but it checks any ``--optim``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline_lib.metrics import loss_history

FIRST_COMPARED_STEP = 4  # steps 1-3 use the same weights in all three runs (above)
CONTROL_FACTOR = 10.0  # the control must differ from straight by >= 10x what the resumed run differs by


def losses_by_step(trainer_state: Path) -> dict[int, float]:
    """{step: finite training loss} from a trainer_state.json written with --logging_steps 1 (metrics.loss_history:
    a non-finite loss is left out, so compare() sees that step as missing and fails)."""
    return dict(loss_history(json.loads(Path(trainer_state).read_text())))


def compare(straight: dict[int, float], resumed: dict[int, float], control: dict[int, float]) -> dict[str, Any]:
    """Verdict on the three runs' losses at every step >= FIRST_COMPARED_STEP the straight run logged; one missing
    from the resumed or control run (not logged, or not finite) fails."""
    steps = sorted(s for s in straight if s >= FIRST_COMPARED_STEP)
    if not steps:
        return {"passed": False, "steps": [], "reason": f"the straight run logged no step >= {FIRST_COMPARED_STEP}"}
    missing = {name: [s for s in steps if s not in run] for name, run in (("resumed", resumed), ("control", control))}
    if any(missing.values()):
        return {"passed": False, "steps": steps, "reason": f"steps without a finite loss: {missing}"}
    d_resumed = max(abs(straight[s] - resumed[s]) for s in steps)
    d_control = max(abs(straight[s] - control[s]) for s in steps)
    record = {"steps": steps, "max_abs_diff_resumed": d_resumed, "max_abs_diff_control": d_control,
              "straight": [straight[s] for s in steps], "resumed": [resumed[s] for s in steps],
              "control": [control[s] for s in steps], "control_factor": CONTROL_FACTOR}
    if d_control == 0 or d_control < CONTROL_FACTOR * d_resumed:
        why = ("the control (optimizer state dropped) matched the straight run as closely as the resumed run did: "
               "these losses cannot tell a restored optimizer state from a fresh one")
        return {**record, "passed": False, "reason": why}
    return {**record, "passed": True,
            "reason": f"resumed within {d_resumed:.3g} of the straight run; dropping the optimizer state moved it "
                      f"{d_control:.3g}"}
