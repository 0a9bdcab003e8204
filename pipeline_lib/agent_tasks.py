"""The coding-agent task contract shared by trajectories (15), GRPO (18) and evaluation: task rows, tools, prompt.

    from pipeline_lib.agent_tasks import load_tasks, task_prompt
    tasks = load_tasks("data/python/grpo/heldout.jsonl")
    prompt = task_prompt(tasks[0])       # Harmony text ending "<|start|>assistant": what GRPO and eval generate from

A task row (written by scripts/16_generate_mutations.py) is one JSON object per line:
    {"id", "language", "files": {path: content} (the whole buggy task dir), "buggy_file" (a key of files),
     "test_command": [argv...] (no shell, cwd = the task dir), "reference_fix" (full fixed buggy_file),
     "operator", "source", "split", "failure" (excerpt of the real failing test output)}

The prompt is the first half of the agent trajectory Phase 2 trains on (scripts/15_generate_trajectories.py): the
coding-agent developer prompt (writeup §5, one copy: ``formatters.CODING_AGENT_DEV_PROMPT``) with the tools
read_file / run_tests / apply_patch, the user's request, the agent's read_file call with the buggy file as its
result, and its run_tests call with the failure as its result. The model's next message is the fix: an apply_patch
call with a unified diff (or a final answer with the whole fixed file), which pipeline_lib.rewards scores.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pipeline_lib.formatters import CODING_AGENT_DEV_PROMPT, EDIT_TOOLS, _tool

LANGUAGES = ("python", "rust", "go", "typescript")
REQUIRED_KEYS = ("id", "language", "files", "buggy_file", "test_command", "reference_fix")
READ_FILE, APPLY_PATCH = EDIT_TOOLS[0], EDIT_TOOLS[1]  # the same declarations Phase 0's edit trajectories use
RUN_TESTS = _tool("run_tests", "Run the repository's test suite and return its output and exit status.", None)
AGENT_TOOLS = [READ_FILE, RUN_TESTS, APPLY_PATCH]
REASONING_EFFORT = "medium"  # Phase 0's edit trajectories (commitpackft / EditPackFT) use medium too
# A tool result longer than this keeps its head and tail: a test run's failure summary sits at the end, and 6,000
# characters (~1,750 tokens at 3.42 chars/token) keep a GRPO prompt well under the tiny profile's lengths.
MAX_TOOL_OUTPUT_CHARS = 6000
TOOL_OUTPUT_HEAD_CHARS = 1500

__all__ = ["AGENT_TOOLS", "CODING_AGENT_DEV_PROMPT", "load_tasks", "task_prompt", "task_prompt_messages",
           "validate_task"]


class TaskError(ValueError):
    """A task row that breaks the contract; the message names the file, line and field."""


def validate_task(task: Any, where: str) -> dict[str, Any]:
    """The row itself if it keeps the contract above, else TaskError naming ``where`` (e.g. "tasks.jsonl:3")."""
    if not isinstance(task, dict):
        raise TaskError(f"{where}: a task must be a JSON object, got {type(task).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in task]
    if missing:
        raise TaskError(f"{where}: task {task.get('id', '?')!r} lacks {', '.join(missing)}")
    files, buggy = task["files"], task["buggy_file"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise TaskError(f"{where}: task {task['id']!r}: 'files' must map paths to file contents (strings)")
    if buggy not in files:
        raise TaskError(f"{where}: task {task['id']!r}: buggy_file {buggy!r} is not a key of files")
    command = task["test_command"]
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise TaskError(f"{where}: task {task['id']!r}: test_command must be a non-empty list of strings (argv)")
    if not isinstance(task["reference_fix"], str) or task["reference_fix"] == files[buggy]:
        raise TaskError(f"{where}: task {task['id']!r}: reference_fix must be the fixed file and differ from it")
    if task["language"] not in LANGUAGES:
        raise TaskError(f"{where}: task {task['id']!r}: language {task['language']!r} is not one of {LANGUAGES}")
    return task


def load_tasks(path: str | os.PathLike, limit: int | None = None) -> list[dict[str, Any]]:
    """Every task of a JSON Lines file, validated (TaskError names file:line), in file order; ``limit`` = first N."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such task file (write it with scripts/16_generate_mutations.py)")
    tasks, seen = [], set()
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskError(f"{where}: not JSON ({err.msg})") from None
        task = validate_task(row, where)
        if task["id"] in seen:
            raise TaskError(f"{where}: duplicate task id {task['id']!r}")
        seen.add(task["id"])
        tasks.append(task)
        if limit is not None and len(tasks) >= limit:
            break
    if not tasks:
        raise TaskError(f"{file}: no tasks")
    return tasks


def clip_tool_output(text: str, limit: int = MAX_TOOL_OUTPUT_CHARS, head: int = TOOL_OUTPUT_HEAD_CHARS) -> str:
    """``text`` if short enough, else its head and tail around a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-tail:]}"


# Run-to-run noise in test output, removed so that regenerating tasks and trajectories from the same corpus is
# byte-stable: libtest's thread ids ("thread 'm::tests::t' (34) panicked", Rust >= 1.88; they follow thread creation
# order), the runners' timings ("finished in 0.01s", "Ran 4 tests in 0.002s": set to 0.00s / 0.000s, a value the
# runners print themselves for these sub-10 ms suites) and the sandbox's temp run folder in tracebacks
# ("/tmp/pipeline-sandbox-p2ut05fg/work/test_x.py" -> "test_x.py", the path relative to the task dir, which is the
# command's cwd). The ORDER of Rust failures is fixed at the source: the corpus runs libtest single-threaded.
TEST_OUTPUT_NOISE = (
    (re.compile(r"(thread '[^'\n]*') \(\d+\)"), r"\1"),
    (re.compile(r"(finished in )\d+(?:\.\d+)?s\b"), r"\g<1>0.00s"),
    (re.compile(r"(Ran \d+ tests? in )\d+(?:\.\d+)?s\b"), r"\g<1>0.000s"),
    (re.compile(r"[^\s\"'(]*pipeline-sandbox-[^/\s\"']+/work/"), ""),
)


def normalise_test_output(text: str) -> str:
    """``text`` with TEST_OUTPUT_NOISE removed (task failure excerpts and every run_tests result)."""
    for pattern, replacement in TEST_OUTPUT_NOISE:
        text = pattern.sub(replacement, text)
    return text


def format_test_run(command: list[str], returncode: int | None, stdout: str, stderr: str,
                    timed_out: bool = False) -> str:
    """What the run_tests tool returns: the command, its output (stdout then stderr, normalised by
    ``normalise_test_output``) and how it ended."""
    body = "".join(part if part.endswith("\n") or not part else part + "\n"
                   for part in (normalise_test_output(stdout), normalise_test_output(stderr)))
    end = "timed out" if timed_out else f"exit status {returncode}"
    return clip_tool_output(f"$ {' '.join(command)}\n{body}[{end}]")


def task_request(task: dict[str, Any]) -> str:
    """The user's message: which file holds the bug and which command shows it."""
    return (f"The tests of this {task['language'].capitalize()} project fail (`{' '.join(task['test_command'])}`). "
            f"The bug is in `{task['buggy_file']}`. Fix it so that the tests pass.")


def task_prompt_messages(task: dict[str, Any], failure: str | None = None) -> list[dict[str, Any]]:
    """user request -> (analysis) read_file(buggy_file) = the buggy file -> run_tests() = ``failure``.

    ``failure`` is the run_tests result: ``format_test_run`` of a real run (``observe_failure``; trajectories and
    evaluation), or None for the task's stored excerpt ``task["failure"]`` (no execution needed).
    """
    failing = failure if failure is not None else task.get("failure") or ""
    return [
        {"role": "user", "content": task_request(task)},
        {"role": "assistant", "content": "", "thinking": f"I'll read `{task['buggy_file']}`, then run the tests.",
         "tool_calls": [{"name": "read_file", "arguments": {"path": task["buggy_file"]}}]},
        {"role": "tool", "name": "read_file", "content": task["files"][task["buggy_file"]]},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "run_tests", "arguments": {}}]},
        {"role": "tool", "name": "run_tests", "content": failing},
    ]


def observe_failure(task: dict[str, Any]) -> str:
    """Run the buggy task's tests in the sandbox and return what run_tests shows (ValueError if they pass)."""
    from pipeline_lib.sandbox import run_files

    result = run_files(task["files"], task["test_command"])
    if result.returncode == 0 and not result.timed_out:
        raise ValueError(f"task {task['id']!r}: the buggy version passes its tests, so there is nothing to fix")
    return format_test_run(task["test_command"], result.returncode, result.stdout, result.stderr, result.timed_out)


def render_kwargs() -> dict[str, Any]:
    """The Harmony settings every coding-agent render uses (trajectories, GRPO prompts, evaluation prompts)."""
    return {"developer_instructions": CODING_AGENT_DEV_PROMPT, "tools": AGENT_TOOLS,
            "reasoning_effort": REASONING_EFFORT}


def task_prompt(task: dict[str, Any], failure: str | None = None) -> str:
    """The generation prompt for a task: Harmony text ending ``<|start|>assistant`` (GRPO and evaluation)."""
    from pipeline_lib.harmony import encode_harmony_prompt

    return encode_harmony_prompt(task_prompt_messages(task, failure), **render_kwargs())
