"""pipeline_lib.rewards: known-good fixes earn exactly 1, known-bad and hostile ones 0, for both completion forms.

Tasks are written here (a clamp function in Python and in a one-module Rust crate), independent of the mutation
corpus. Hostile completions (tests/hostile_cases.py) are each scored with the sandbox on (reward 0, attack
contained) and off (the same completion is rewarded: the negative control).
"""

from __future__ import annotations

import difflib
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import hostile_cases as hostile
import pytest

from pipeline_lib.harmony import harmony_encoding
from pipeline_lib.rewards import (
    ExecutionReward,
    FixNotFound,
    PatchError,
    RewardWeights,
    apply_unified_diff,
    check_harmony_format,
    extract_fix,
    score_completion,
)
from pipeline_lib.sandbox import Limits

REPO = Path(__file__).resolve().parents[1]
# wall 20 s: only the CPU/process/memory/output limits should stop these runs, even on a loaded 2-core machine
FAST = Limits(cpu_seconds=1, wall_seconds=20.0, memory_bytes=256 << 20, max_processes=32,
              max_output_bytes=64 * 1024)

PY_BUGGY = '''def clamp(x, lo, hi):
    """Clamp x into [lo, hi]."""
    if x > lo:
        return lo
    if x > hi:
        return hi
    return x
'''
PY_FIXED = PY_BUGGY.replace("if x > lo", "if x < lo")
PY_TEST = '''import unittest

from clamp import clamp


class ClampTest(unittest.TestCase):
    def test_inside(self):
        self.assertEqual(clamp(5, 0, 10), 5)

    def test_below(self):
        self.assertEqual(clamp(-1, 0, 10), 0)

    def test_above(self):
        self.assertEqual(clamp(11, 0, 10), 10)
'''
PY_TASK = {"id": "python-clamp-flip_comparison-0", "language": "python",
           "files": {"clamp.py": PY_BUGGY, "test_clamp.py": PY_TEST}, "buggy_file": "clamp.py",
           "test_command": ["python", "-m", "unittest", "-q", "test_clamp"], "reference_fix": PY_FIXED,
           "operator": "flip_comparison", "source": "clamp", "split": "train", "failure": "AssertionError: 0 != 5"}

RS_BUGGY = '''pub fn clamp(x: i64, lo: i64, hi: i64) -> i64 {
    if x > lo {
        return lo;
    }
    if x > hi {
        return hi;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::clamp;

    #[test]
    fn clamps() {
        assert_eq!(clamp(5, 0, 10), 5);
        assert_eq!(clamp(-1, 0, 10), 0);
        assert_eq!(clamp(11, 0, 10), 10);
    }
}
'''
RS_FIXED = RS_BUGGY.replace("if x > lo", "if x < lo")
RS_TASK = {"id": "rust-clamp-flip_comparison-0", "language": "rust",
           "files": {"Cargo.toml": '[package]\nname = "seeds"\nversion = "0.1.0"\nedition = "2021"\n',
                     "src/lib.rs": "pub mod clamp;\n", "src/clamp.rs": RS_BUGGY},
           "buggy_file": "src/clamp.rs", "test_command": ["cargo", "test", "--offline", "-q"],
           "reference_fix": RS_FIXED, "operator": "flip_comparison", "source": "clamp", "split": "train"}


def diff_of(old: str, new: str, path: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))


def patch_call(diff: str, key: str = "patch") -> str:
    return ("<|channel|>analysis<|message|>The comparison is flipped.<|end|><|start|>assistant"
            "<|channel|>commentary to=functions.apply_patch <|constrain|>json<|message|>"
            + json.dumps({key: diff}) + "<|call|>")


def file_answer(content: str, language: str = "python") -> str:
    return f"<|channel|>final<|message|>The fixed file:\n\n```{language}\n{content}```\n<|return|>"


# ------------------------------------------------------------------------------------------- known good / bad


@pytest.mark.parametrize("form", ["patch", "file"])
def test_known_good_python_fix_scores_exactly_one(form):
    completion = patch_call(diff_of(PY_BUGGY, PY_FIXED, "clamp.py")) if form == "patch" else file_answer(PY_FIXED)
    score = score_completion(PY_TASK, completion, limits=FAST)
    assert (score.form, score.format_ok, score.parsed, score.applied, score.compiles, score.tests_passed,
            score.lint_ok) == (form, True, True, True, True, True, True), score
    assert score.reward == 1.0 and score.error is None
    assert score.isolation["enabled"] is True


@pytest.mark.parametrize("form", ["patch", "file"])
def test_known_bad_python_fix_scores_zero(form):
    wrong = PY_BUGGY.replace("if x > lo", "if x <= hi")  # compiles, plausible, wrong
    completion = patch_call(diff_of(PY_BUGGY, wrong, "clamp.py")) if form == "patch" else file_answer(wrong)
    score = score_completion(PY_TASK, completion, limits=FAST)
    assert score.applied and score.compiles and not score.tests_passed
    assert score.reward == 0.0 and "tests fail" in score.error


def test_unfixed_file_scores_zero():
    assert score_completion(PY_TASK, file_answer(PY_BUGGY), limits=FAST).reward == 0.0


def test_known_good_diff_key_accepted():
    score = score_completion(PY_TASK, patch_call(diff_of(PY_BUGGY, PY_FIXED, "clamp.py"), key="diff"), limits=FAST)
    assert score.reward == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("form", ["patch", "file"])
def test_known_good_rust_fix_scores_exactly_one(form):
    completion = (patch_call(diff_of(RS_BUGGY, RS_FIXED, "src/clamp.rs")) if form == "patch"
                  else file_answer(RS_FIXED, "rust"))
    score = score_completion(RS_TASK, completion, limits=Limits(wall_seconds=120.0))
    assert (score.compiles, score.tests_passed, score.lint_ok, score.reward) == (True, True, True, 1.0), score


@pytest.mark.slow
def test_rust_bad_fixes():
    """Wrong logic: tests fail (0). A type error: does not compile (0). An unused variable: lint term lost."""
    limits = Limits(wall_seconds=120.0)
    wrong = score_completion(RS_TASK, file_answer(RS_BUGGY.replace("if x > lo", "if x <= hi"), "rust"),
                             limits=limits)
    assert wrong.compiles and not wrong.tests_passed and wrong.reward == 0.0
    broken = score_completion(RS_TASK, patch_call(diff_of(RS_BUGGY, RS_FIXED.replace("return lo;", 'return "lo";'),
                                                          "src/clamp.rs")), limits=limits)
    assert broken.applied and not broken.compiles and broken.reward == 0.0, broken
    warned = score_completion(RS_TASK, file_answer(RS_FIXED.replace("    x\n}", "    let unused = 1;\n    x\n}", 1),
                                                   "rust"), limits=limits)
    assert warned.tests_passed and warned.lint_ok is False
    assert warned.reward == pytest.approx(1.0 - RewardWeights().lint)


# ------------------------------------------------------------------------------ format, lint, cheats, partial


def test_broken_harmony_format_costs_the_format_term():
    completion = file_answer(PY_FIXED).replace("<|return|>", "")  # correct fix, unterminated message
    score = score_completion(PY_TASK, completion, limits=FAST)
    assert score.tests_passed and not score.format_ok
    assert score.reward == pytest.approx(1.0 - RewardWeights().format)


def test_new_lint_finding_costs_the_lint_term():
    score = score_completion(PY_TASK, file_answer("import os\n" + PY_FIXED), limits=FAST)
    assert score.tests_passed and score.lint_ok is False
    assert score.reward == pytest.approx(1.0 - RewardWeights().lint)


def test_exit_zero_at_import_is_not_a_pass():
    score = score_completion(PY_TASK, file_answer("import os\nos._exit(0)\n"), limits=FAST)
    assert not score.tests_passed and score.reward == 0.0


def test_syntax_error_does_not_compile():
    score = score_completion(PY_TASK, file_answer("def clamp(x, lo, hi:\n    return x\n"), limits=FAST)
    assert score.applied and not score.compiles and score.reward == 0.0 and "compile" in score.error


def test_partial_credit_mode():
    weights = RewardWeights(partial_credit=True)
    wrong = PY_BUGGY.replace("if x > lo", "if x <= hi")
    score = score_completion(PY_TASK, file_answer(wrong), weights, FAST)
    assert score.reward == pytest.approx(weights.format + weights.applies + weights.compiles + weights.lint)
    unparsable = score_completion(PY_TASK, "<|channel|>final<|message|>no code here<|return|>", weights, FAST)
    assert unparsable.reward == pytest.approx(weights.format)


def test_degenerate_megabyte_completion_is_scored_quickly():
    """1 MB without a space: one BPE pre-token (quadratic; tiktoken panics near 1 MB) unless encoded in pieces."""
    for completion in ("<|channel|>final<|message|>" + "a" * 1_000_000 + "<|return|>", "a" * 1_000_000):
        started = time.monotonic()
        score = score_completion(PY_TASK, completion, limits=FAST)
        assert score.reward == 0.0 and not score.parsed, score
        assert "0 fenced code blocks" in score.error or "no final answer" in score.error, score.error
        assert time.monotonic() - started < 30


def test_weights_validated():
    with pytest.raises(ValueError, match="sum to 1"):
        RewardWeights(tests=0.9)
    with pytest.raises(ValueError, match="unknown reward weight"):
        RewardWeights.from_mapping({"tests": 0.6, "style": 0.1})
    assert RewardWeights.from_mapping({"format": 0.0, "tests": 0.7}).tests == 0.7


@pytest.mark.parametrize(("text", "ok"), [
    ("<|channel|>final<|message|>hi<|return|>", True),
    ("<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>hi<|return|>", True),
    ('<|channel|>commentary to=functions.apply_patch <|constrain|>json<|message|>{"patch": ""}<|call|>', True),
    ("<|channel|>final<|message|>hi", False),                                      # no terminal token
    ("<|message|>hi<|return|>", False),                                           # no channel
    ("<|channel|>shout<|message|>hi<|return|>", False),                           # invalid channel
    ("<|channel|>final<|message|>a<|return|><|channel|>final<|message|>b<|return|>", False),
    ("<|channel|>commentary<|message|>{}<|call|>", False),                        # a call without a recipient
    ('<|channel|>commentary to=functions.apply_patch<|message|>{"patch": ""}<|call|>', False),  # no constrain
    ("plain text", False),
])
def test_harmony_format_term(text, ok):
    assert check_harmony_format(text)[0] is ok


# ----------------------------------------------------------------------------------- malformed / wrong patches

GOOD_DIFF = diff_of(PY_BUGGY, PY_FIXED, "clamp.py")


@pytest.mark.parametrize(("diff", "reason"), [
    ("if x < lo", "not a unified diff"),
    (GOOD_DIFF.replace("@@ -1,6 +1,6 @@", "@@ -1,9 +1,6 @@"), "header says"),
    (GOOD_DIFF.replace("@@ -1,6 +1,6 @@", "@@ one @@"), "malformed header"),
    (GOOD_DIFF.replace(' """Clamp x into [lo, hi]."""', ' """Clamp x."""'), "does not match"),
    (GOOD_DIFF.replace("--- a/clamp.py", "--- /dev/null"), "creating or deleting"),
    (GOOD_DIFF.replace("a/clamp.py", "a/test_clamp.py").replace("b/clamp.py", "b/test_clamp.py"),
     "not the file to fix"),
    (GOOD_DIFF + "--- a/test_clamp.py\n+++ b/test_clamp.py\n@@ -1 +1 @@\n-import unittest\n+import os\n",
     "not the file to fix"),
    (GOOD_DIFF.replace("+++ b/clamp.py\n", ""), "not followed by"),
])
def test_malformed_patches_score_zero(diff, reason):
    with pytest.raises(PatchError, match=reason):
        apply_unified_diff(diff, PY_TASK["files"], only="clamp.py")
    score = score_completion(PY_TASK, patch_call(diff), limits=FAST)
    assert score.parsed and not score.applied and score.reward == 0.0 and reason in score.error


@pytest.mark.parametrize(("completion", "reason"), [
    ('<|channel|>commentary to=functions.apply_patch <|constrain|>json<|message|>{"patch": <|call|>', "not JSON"),
    ('<|channel|>commentary to=functions.apply_patch <|constrain|>json<|message|>["x"]<|call|>', "not a JSON object"),
    ('<|channel|>commentary to=functions.apply_patch <|constrain|>json<|message|>{"path": "x"}<|call|>', "no string"),
    ('<|channel|>commentary to=functions.read_file <|constrain|>json<|message|>{"path": "x"}<|call|>', "calls"),
    ("<|channel|>final<|message|>```python\na\n```\n```python\nb\n```<|return|>", "2 fenced"),
    ("<|channel|>analysis<|message|>thinking only<|end|>", "no final answer"),
])
def test_unreadable_fixes_score_zero(completion, reason):
    with pytest.raises(FixNotFound, match=reason):
        extract_fix(completion)
    score = score_completion(PY_TASK, completion, limits=FAST)
    assert not score.parsed and score.reward == 0.0 and reason in score.error


def test_strict_applier_offsets_eof_and_blank_context():
    old = "a\nb\n\nc\nd\ne\n"
    new = "a\nB\n\nc\nd\nE"
    diff = ("--- a/f.txt\n+++ b/f.txt\n@@ -1,6 +1,6 @@\n a\n-b\n+B\n \n c\n d\n-e\n+E\n"
            "\\ No newline at end of file\n")
    assert apply_unified_diff(diff, {"f.txt": old}, only="f.txt")["f.txt"] == new  # '\ No newline' honoured
    shifted = diff.replace("@@ -1,6 +1,6 @@", "@@ -3,6 +3,6 @@")  # wrong line number, unique context: applies
    assert apply_unified_diff(shifted, {"f.txt": old}, only="f.txt")["f.txt"] == new
    no_space = diff.replace("\n \n", "\n\n")  # blank context line without its leading space
    assert apply_unified_diff(no_space, {"f.txt": old}, only="f.txt")["f.txt"] == new
    with pytest.raises(PatchError, match="matches 2 places"):
        apply_unified_diff("--- a/f\n+++ b/f\n@@ -9,1 +9,1 @@\n-x\n+y\n", {"f": "x\nz\nx\n"}, only="f")


def test_fenced_diff_in_a_final_answer_is_a_patch():
    fix = extract_fix(f"<|channel|>final<|message|>```diff\n{GOOD_DIFF}```<|return|>")
    assert fix.form == "patch" and fix.content == GOOD_DIFF


# --------------------------------------------------------------------------------------------- hostile fixes


@pytest.fixture
def listener():
    """A TCP server in the test process on 127.0.0.1; records what reaches it."""
    received: list[bytes] = []
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                received.append(conn.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join(2)
    server.close()


def _world_writable(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # so only the sandbox's read-only mount, not file permissions, can stop the write
    return path


HOSTILE = ["fork_bomb", "cpu_loop", "output_flood", "read_secrets", "write_outside", "connect", "delete_outside",
           "allocate"]


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "UNSANDBOXED-control"])
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_fix(case, sandboxed, tmp_path, monkeypatch, listener):
    canary = f"hf_canary_{uuid.uuid4().hex}"
    monkeypatch.setenv("HF_TOKEN", canary)
    port, received = listener
    outside = _world_writable(tmp_path / "outside")
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o666)
    targets = [str(outside / "pwned.txt"), str(_world_writable(tmp_path / "fake-home") / ".bashrc")]
    real_home_target = Path(pwd.getpwuid(os.getuid()).pw_dir) / f".pipeline-sandbox-canary-{uuid.uuid4().hex}"
    if sandboxed:  # the real home only when the sandbox is on
        targets.append(str(real_home_target))
    code = {
        "fork_bomb": lambda: hostile.fork_bomb(FAST.max_processes + 20),
        "cpu_loop": lambda: hostile.cpu_loop(1.5),
        "output_flood": lambda: hostile.output_flood(4 * FAST.max_output_bytes),
        "read_secrets": lambda: hostile.read_secrets(canary),
        "write_outside": lambda: hostile.write_files(targets),
        "connect": lambda: hostile.connect(port),
        "delete_outside": lambda: hostile.delete_file(str(victim)),
        "allocate": lambda: hostile.allocate(2 * FAST.memory_bytes),
    }[case]()
    try:
        score = score_completion(PY_TASK, file_answer(code), limits=FAST, isolation=sandboxed)
    finally:
        leaked_home = real_home_target.exists()
        real_home_target.unlink(missing_ok=True)
    evidence = {
        "write_outside": any(Path(t).exists() for t in targets),
        "connect": bool(received),
        "delete_outside": not victim.exists(),
        "read_secrets": canary in score.output,
    }
    if sandboxed:
        assert score.reward == 0.0 and not score.tests_passed, score
        assert not evidence.get(case, False), evidence
        assert not leaked_home and canary not in json.dumps(score.to_dict())
    else:  # negative control: without the sandbox the same completion's attack works and is rewarded
        assert score.tests_passed and score.reward > 0.0, score
        if case in evidence:
            assert evidence[case], evidence


@pytest.mark.slow
def test_scorer_keeps_going_after_hostile_batch(monkeypatch):
    """A GRPO-sized batch through the TRL adapter in 2 worker processes: unbounded attacks, garbage and a good fix.

    Token ids are given as TRL passes them (``completion_ids``), so the adapter decodes the Harmony markup itself.
    """
    monkeypatch.setenv("HF_TOKEN", "hf_canary_batch")
    completions = [file_answer(hostile.REAL_FORK_BOMB), file_answer(hostile.REAL_INFINITE_LOOP),
                   file_answer(hostile.GIGABYTE_OF_OUTPUT), "garbage <|return|><|call|>", "",
                   patch_call(GOOD_DIFF), file_answer(PY_FIXED)]
    encoding = harmony_encoding()
    ids = [encoding.encode(c, allowed_special="all") for c in completions]
    metrics: dict[str, float] = {}
    reward = ExecutionReward([PY_TASK], limits=Limits(cpu_seconds=2, wall_seconds=4.0, max_processes=32), workers=2)
    try:
        values = reward(prompts=[""] * len(ids), completions=["decoded without markup"] * len(ids),
                        completion_ids=ids, task_id=[PY_TASK["id"]] * len(ids),
                        log_metric=lambda name, value: metrics.__setitem__(name, value))
        again = reward(prompts=[""], completions=[file_answer(PY_FIXED)], task=[json.dumps(PY_TASK)])
    finally:
        reward.close()
    assert values == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert metrics["reward_accuracy"] == pytest.approx(2 / 7)
    assert again == [1.0]
    errors = [s.error for s in reward.last_scores]
    assert errors == [None]


def test_reward_adapter_in_process_and_config_errors():
    reward = ExecutionReward({PY_TASK["id"]: PY_TASK}, limits=FAST, workers=0)
    assert reward(prompts=["p"], completions=[[{"role": "assistant", "content": file_answer(PY_FIXED)}]],
                  task_id=[PY_TASK["id"]]) == [1.0]
    with pytest.raises(KeyError, match="nope"):
        reward(prompts=["p"], completions=["x"], task_id=["nope"])
    with pytest.raises(ValueError, match="needs a dataset column"):
        reward(prompts=["p"], completions=["x"])


# ------------------------------------------------------------------------------------------------------- CLI


def test_score_completion_cli(tmp_path):
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text(json.dumps({"id": "other"}) + "\n" + json.dumps(PY_TASK) + "\n")
    completion = tmp_path / "completion.txt"
    completion.write_text(patch_call(GOOD_DIFF))
    cmd = [sys.executable, str(REPO / "scripts/score_completion.py"), "--task-file", str(task_file), "--task-id",
           PY_TASK["id"], "--completion", str(completion)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["reward"] == 1.0 and line["tests_passed"] is True
    assert line["isolation"]["available"] is True and "blocked" in line["isolation"]["network"]
    missing = subprocess.run([*cmd[:5], "missing-id", *cmd[6:]], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "missing-id" in missing.stderr
