"""Score one completion against one task by execution in the sandbox.

    score = score_completion(task, completion)        # Score(reward=1.0, tests_passed=True, ...)

Stages (each recorded in ``Score``; a failed stage stops the later ones):
1. format   -- ``check_harmony_format`` (well-formed Harmony ending in <|return|>/<|call|>), independent of the rest;
2. parsed   -- a fix was found: an apply_patch call or one fenced block (``extract_fix``);
3. applied  -- the diff applied strictly to ``buggy_file`` (``apply_unified_diff``), or the block replaced it;
4. compiles -- python: ``compile()`` of the new file in this process (parsing only, nothing runs);
               rust: the test build in the sandbox did not fail (no ``error[E...]``/``could not compile``) and the test
               binary started (``running N tests``); go/typescript: no build error in the test output;
5. tests    -- ``test_command`` in the sandbox exits 0 by itself (not killed for time or output), and the
               runner's summary says tests ran and passed (unittest ``Ran N tests`` with N > 0 and ``OK``; cargo
               ``test result: ok`` with > 0 passed) -- a fix that calls ``os._exit(0)`` at import does not pass;
6. lint     -- python: no finding of ``python_lint`` that the reference fix does not have; rust: no rustc warning in
               the fixed file; None for other languages (counted as passing).

Reward (``RewardWeights``): 0 unless the tests pass; then the sum of the weights of the terms that hold, so a correct
fix with the Harmony format broken or a new lint finding earns less than 1 and a known-good fix earns exactly 1.
``partial_credit=True`` instead gives each term's weight as soon as it and the stages before it hold (format on its
own), for shaped rewards when almost nothing passes.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipeline_lib.rewards.completion import FixNotFound, check_harmony_format, extract_fix
from pipeline_lib.rewards.lint import python_lint, rust_warnings
from pipeline_lib.rewards.patch import PatchError, apply_unified_diff
from pipeline_lib.sandbox import Limits, RunResult, run_files

OUTPUT_TAIL_CHARS = 2000  # of the test run kept in Score.output, for logs


@dataclass(frozen=True)
class RewardWeights:
    format: float = 0.1
    applies: float = 0.1
    compiles: float = 0.1
    tests: float = 0.6
    lint: float = 0.1
    partial_credit: bool = False

    def __post_init__(self) -> None:
        terms = self.terms()
        bad = {k: v for k, v in terms.items() if not (isinstance(v, (int, float)) and v >= 0)}
        if bad:
            raise ValueError(f"reward weights must be numbers >= 0, got {bad}")
        if not math.isclose(math.fsum(terms.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"reward weights must sum to 1, got {math.fsum(terms.values())} from {terms}")

    def terms(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "partial_credit"}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> RewardWeights:
        """From a YAML section; an unknown key is an error that names it."""
        values = dict(values or {})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown reward weight(s) {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        return cls(**values)


@dataclass
class Score:
    reward: float
    form: str | None = None
    parsed: bool = False
    applied: bool = False
    compiles: bool = False
    tests_passed: bool = False
    lint_ok: bool | None = None
    format_ok: bool = False
    error: str | None = None
    isolation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    output: str = ""  # tail of the test run's stdout + stderr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_WEIGHTS, DEFAULT_LIMITS = RewardWeights(), Limits()


def score_completion(task: dict, completion: str, weights: RewardWeights = DEFAULT_WEIGHTS,
                     limits: Limits = DEFAULT_LIMITS, *, isolation: bool = True) -> Score:
    """Score ``completion`` (text after ``<|start|>assistant``) on ``task`` (a task row, see docs in README).

    Never raises for a bad completion; raises ``SandboxUnavailable`` when nothing can be executed safely, and
    KeyError/ValueError for a malformed task. ``isolation=False`` is for the tests' negative controls only.
    """
    started = time.monotonic()
    score = Score(reward=0.0)
    score.format_ok, format_error = check_harmony_format(completion)
    buggy = task["buggy_file"]
    try:
        fix = extract_fix(completion)
        score.form, score.parsed = fix.form, True
        if fix.form == "patch":
            files = apply_unified_diff(fix.content, dict(task["files"]), only=buggy)
        else:
            files = {**task["files"], buggy: fix.content if fix.content.endswith("\n") else fix.content + "\n"}
        score.applied = True
        _build_and_test(task, files, score, limits, isolation)
    except (FixNotFound, PatchError) as exc:
        score.error = str(exc)
    if score.error is None and not score.format_ok:
        score.error = f"format: {format_error}"
    score.reward = reward(score, weights)
    score.seconds = round(time.monotonic() - started, 3)
    return score


def _build_and_test(task: dict, files: dict[str, str], score: Score, limits: Limits, isolation: bool) -> None:
    language, buggy = task["language"], task["buggy_file"]
    if language == "python":
        try:
            compile(files[buggy], buggy, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            score.error = f"does not compile: {type(exc).__name__}: {exc}"
            return
        score.compiles = True
    run = run_files(files, task["test_command"], limits, isolation=isolation)
    score.isolation = run.isolation
    output = f"{run.stdout}\n{run.stderr}"
    score.output = output[-OUTPUT_TAIL_CHARS:]
    if language == "rust":  # compiled = the test binary started (a build cut short by a limit did not compile)
        score.compiles = not _build_failed(language, output) and re.search(r"^running \d+ tests?$", output, re.M) \
            is not None
    elif language != "python":
        score.compiles = not _build_failed(language, output)
    score.tests_passed = score.compiles and _tests_passed(language, run, output)
    if score.compiles:
        score.lint_ok = _lint_ok(task, files, output)
    if not score.tests_passed:
        why = ("timed out" if run.timed_out else "output over the cap" if run.output_truncated else
               "does not compile" if not score.compiles else f"tests fail (exit {run.returncode})")
        score.error = why


_BUILD_FAILED = {
    "rust": re.compile(r"^error\[E\d+\]|could not compile", re.M),  # not "error: test failed"
    "go": re.compile(r"\[build failed\]|^# \S+\n\S+\.go:\d+", re.M),
    "typescript": re.compile(r"error TS\d+:"),
}


def _build_failed(language: str, output: str) -> bool:
    pattern = _BUILD_FAILED.get(language)
    return bool(pattern and pattern.search(output))


def _tests_passed(language: str, run: RunResult, output: str) -> bool:
    if run.returncode != 0 or run.timed_out:  # a sandboxed run over the output cap was killed: returncode -9
        return False
    if language == "python":
        ran = re.findall(r"^Ran (\d+) tests? in ", output, re.M)
        return bool(ran) and int(ran[-1]) > 0 and re.search(r"^OK\b", output, re.M) is not None
    if language == "rust":
        results = re.findall(r"^test result: (ok|FAILED)\. (\d+) passed", output, re.M)
        return bool(results) and all(r[0] == "ok" for r in results) and sum(int(r[1]) for r in results) > 0
    return True


def _lint_ok(task: dict, files: dict[str, str], output: str) -> bool | None:
    buggy = task["buggy_file"]
    if task["language"] == "python":
        findings = python_lint(files[buggy])
        try:
            baseline = set(python_lint(task.get("reference_fix") or task["files"][buggy]))
        except SyntaxError:
            baseline = set()
        return not set(findings) - baseline
    if task["language"] == "rust":
        return rust_warnings(output, buggy) == 0
    return None


def reward(score: Score, weights: RewardWeights) -> float:
    """0..1 from the stages that hold (see the module docstring for the two modes)."""
    w = weights.terms()
    lint_ok = score.lint_ok is not False
    if not weights.partial_credit:
        if not score.tests_passed:
            return 0.0
        held = {"format": score.format_ok, "applies": True, "compiles": True, "tests": True, "lint": lint_ok}
    else:
        held = {"format": score.format_ok, "applies": score.applied, "compiles": score.applied and score.compiles,
                "tests": score.tests_passed, "lint": score.applied and score.compiles and lint_ok}
    total = math.fsum(w[k] for k, ok in held.items() if ok)
    return min(1.0, max(0.0, round(total, 9)))





TASK_KEYS = ("id", "language", "files", "buggy_file", "test_command")


def load_task(path: str, task_id: str) -> dict:
    """The row with ``id == task_id`` from a tasks.jsonl file; errors name the file, line and what is wrong."""
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
            if isinstance(row, dict) and row.get("id") == task_id:
                missing = [key for key in TASK_KEYS if key not in row]
                if missing:
                    raise ValueError(f"{path}:{number}: task {task_id!r} lacks {missing}")
                if row["buggy_file"] not in row["files"]:
                    raise ValueError(f"{path}:{number}: buggy_file {row['buggy_file']!r} is not a key of files")
                return row
    raise KeyError(f"no task with id {task_id!r} in {path}")
