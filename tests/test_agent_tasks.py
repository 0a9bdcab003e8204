"""The coding-agent task contract: row validation, the shared prompt, the real failure observed in the sandbox."""

from __future__ import annotations

import json

import pytest

from pipeline_lib import agent_tasks
from pipeline_lib.harmony import parse_harmony_conversation

CLAMP_FIX = "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"
CLAMP_BUG = "def clamp(x, lo, hi):\n    return max(lo, x)\n"
CLAMP_TEST = ("import unittest\nfrom clamp import clamp\n\n\nclass T(unittest.TestCase):\n"
              "    def test_inside(self):\n        self.assertEqual(clamp(5, 0, 10), 5)\n\n"
              "    def test_above(self):\n        self.assertEqual(clamp(15, 0, 10), 10)\n")


def clamp_task(**changes) -> dict:
    task = {"id": "python-clamp-wrong_name-0", "language": "python",
            "files": {"clamp.py": CLAMP_BUG, "test_clamp.py": CLAMP_TEST}, "buggy_file": "clamp.py",
            "test_command": ["python", "-m", "unittest", "-q", "test_clamp"], "reference_fix": CLAMP_FIX,
            "operator": "wrong_name", "source": "clamp", "split": "heldout", "failure": "FAILED (failures=1)"}
    return task | changes


def test_load_tasks_names_the_bad_line(tmp_path):
    path = tmp_path / "tasks.jsonl"
    good = json.dumps(clamp_task())
    path.write_text(good + "\n\n" + json.dumps(clamp_task(id="b", buggy_file="nope.py")) + "\n")
    with pytest.raises(agent_tasks.TaskError, match=r"tasks.jsonl:3: task 'b': buggy_file 'nope.py'"):
        agent_tasks.load_tasks(path)
    path.write_text(good + "\n" + good + "\n")
    with pytest.raises(agent_tasks.TaskError, match=r":2: duplicate task id"):
        agent_tasks.load_tasks(path)
    path.write_text(good + "\n{oops\n")
    with pytest.raises(agent_tasks.TaskError, match=r"tasks.jsonl:2: not JSON"):
        agent_tasks.load_tasks(path)
    for bad, message in [(clamp_task(test_command="python -m unittest"), "test_command"),
                         (clamp_task(reference_fix=CLAMP_BUG), "reference_fix"),
                         (clamp_task(language="cobol"), "language")]:
        with pytest.raises(agent_tasks.TaskError, match=message):
            agent_tasks.validate_task(bad, "x:1")
    path.write_text(good + "\n" + json.dumps(clamp_task(id="c")) + "\n")
    assert [t["id"] for t in agent_tasks.load_tasks(path)] == ["python-clamp-wrong_name-0", "c"]
    assert len(agent_tasks.load_tasks(path, limit=1)) == 1


def test_prompt_is_the_trajectory_prefix(gpt_oss_tokenizer):
    """Developer prompt + tools + request + read_file(buggy file) + run_tests(failure), ready for generation."""
    task = clamp_task()
    prompt = agent_tasks.task_prompt(task)
    assert prompt.endswith("<|start|>assistant")
    assert agent_tasks.CODING_AGENT_DEV_PROMPT in prompt
    for name in ("read_file", "run_tests", "apply_patch"):
        assert f"type {name} = " in prompt
    ids = gpt_oss_tokenizer(prompt.removesuffix("<|start|>assistant"), add_special_tokens=False)["input_ids"]
    messages = parse_harmony_conversation(ids)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert messages[2]["content"] == CLAMP_BUG and messages[4]["content"] == task["failure"]
    assert messages[1]["tool_calls"] == [{"name": "read_file", "arguments": {"path": "clamp.py"}}]


def test_observe_failure_runs_the_real_tests():
    shown = agent_tasks.observe_failure(clamp_task())
    assert shown.startswith("$ python -m unittest -q test_clamp\n")
    assert "FAILED (failures=1)" in shown and "test_above" in shown and shown.endswith("[exit status 1]")
    fixed = clamp_task(files={"clamp.py": CLAMP_FIX, "test_clamp.py": CLAMP_TEST})
    with pytest.raises(ValueError, match="passes its tests"):
        agent_tasks.observe_failure(fixed)


def test_clip_keeps_head_and_tail():
    text = "H" * 3000 + "M" * 10_000 + "T" * 5000
    clipped = agent_tasks.clip_tool_output(text)
    assert len(clipped) < agent_tasks.MAX_TOOL_OUTPUT_CHARS + 60
    assert clipped.startswith("H" * agent_tasks.TOOL_OUTPUT_HEAD_CHARS) and clipped.endswith("T" * 4500)
    assert "[... 12000 characters cut ...]" in clipped
    assert agent_tasks.clip_tool_output("short") == "short"
