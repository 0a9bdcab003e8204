"""pipeline_lib.resume_check: the verdict on straight / resumed / control (optimizer.pt dropped) losses."""

from __future__ import annotations

import json

from pipeline_lib.resume_check import FIRST_COMPARED_STEP, compare, losses_by_step

# Losses of the tiny model's CPU run (scripts/check_optimizer_resume.py --tiny --optim adamw_torch, 2026-11-29):
# steps 1-3 are equal in all three runs by construction; the control's fresh AdamW moments move steps 4-6.
STRAIGHT = {1: 12.2465, 2: 12.2323, 3: 12.1948, 4: 12.1545, 5: 12.1357, 6: 12.1206}
CONTROL = {1: 12.2465, 2: 12.2323, 3: 12.1948, 4: 12.1886, 5: 12.1526, 6: 12.1114}


def test_resumed_equal_to_straight_passes_and_reads_only_steps_after_the_checkpoint():
    v = compare(STRAIGHT, dict(STRAIGHT), CONTROL)
    assert v["passed"] and v["steps"] == [4, 5, 6] and v["max_abs_diff_resumed"] == 0
    assert abs(v["max_abs_diff_control"] - 0.0341) < 1e-9
    early = {**STRAIGHT, 2: 99.0}  # a step before FIRST_COMPARED_STEP is not judged
    assert compare(STRAIGHT, early, CONTROL)["passed"] and FIRST_COMPARED_STEP == 4


def test_a_resume_that_lost_its_optimizer_state_fails():
    """Negative control: the 'resumed' run is the control itself (optimizer state gone) -> fails."""
    v = compare(STRAIGHT, dict(CONTROL), CONTROL)
    assert not v["passed"] and "cannot tell" in v["reason"]
    drifted = {s: x + (0.01 if s >= 4 else 0) for s, x in STRAIGHT.items()}  # 0.01 against the control's 0.034
    assert not compare(STRAIGHT, drifted, CONTROL)["passed"]


def test_a_control_that_cannot_see_the_state_fails_and_missing_steps_fail():
    assert not compare(STRAIGHT, dict(STRAIGHT), dict(STRAIGHT))["passed"]  # control 0: not discriminative
    assert compare({1: 1.0}, {1: 1.0}, {1: 2.0}) == {"passed": False, "steps": [],
                                                     "reason": "the straight run logged no step >= 4"}
    nan_at_5 = {s: x for s, x in STRAIGHT.items() if s != 5}  # what losses_by_step leaves of a NaN at step 5
    v = compare(STRAIGHT, nan_at_5, CONTROL)
    assert not v["passed"] and "'resumed': [5]" in v["reason"]


def test_losses_by_step_reads_the_trainer_state(tmp_path):
    state = tmp_path / "trainer_state.json"
    history = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0, "lr": 1e-4}, {"step": 3, "loss": float("nan")},
               {"step": 3, "train_runtime": 3.0}]
    state.write_text(json.dumps({"log_history": history}))
    assert losses_by_step(state) == {1: 2.5, 2: 2.0}  # step 3's NaN is left out
