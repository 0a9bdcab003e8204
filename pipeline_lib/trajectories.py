"""Agent trajectories and IPO pairs from mutation tasks, every tool result from a real run (scripts/15_...py).

    python scripts/15_generate_trajectories.py --language python [--quick-test]

One task (pipeline_lib/agent_tasks.py) becomes, under the coding-agent developer prompt and tools:
    user: fix the failing tests (the bug is in <buggy_file>)
    assistant: read_file(buggy_file)            -> tool: the buggy file (the task's files, as the sandbox writes them)
    assistant: run_tests()                      -> tool: the real failing run (sandbox)
    assistant: analysis + apply_patch(diff)     -> tool: the applier's result (pipeline_lib.rewards.patch, the
                                                   strict applier GRPO's reward uses; buggy -> reference_fix diff)
    assistant: run_tests()                      -> tool: the real passing run (sandbox)
    assistant: final summary
The first half (through the failing run) is ``agent_tasks.task_prompt_messages``: the prompt GRPO and evaluation
generate from, so Phase 2 trains on exactly the prefix those phases show the model.

The IPO pair shares the user request; chosen is the trajectory above, rejected is the same trajectory with a wrong
patch: the diff from the buggy file to a sibling mutant (another task from the same seed program and file), the
sibling closest to the buggy file first (a different wrong edit at or near the bug). Its tests are run: only a
patch that applies and whose tests really fail is used, and its real failing output is the rejected run_tests
result; its final message is the same summary, a claim its own failing run contradicts. The chosen patch is also
scored by ``rewards.score_completion`` as GRPO would score it: a trajectory whose own fix does not earn
tests_passed there is dropped (``chosen_not_rewarded``), so SFT never teaches a call the reward rejects. Both
completions contain the tool results (IPO scores every completion token; the shared prefix cancels in the
chosen-rejected margin, the post-patch results do not).

Rows go through Phase 0's own renderer and round-trip check (``data_prep.render_example``) and writer
(``data_prep.save_category``) into ``<output_dir>/agent_traj/train`` and ``<output_dir>/preference/train``;
``<output_dir>/trajectory_report.json`` has counts, drops by reason and provenance.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib.agent_tasks import format_test_run, render_kwargs, task_prompt_messages
from pipeline_lib.formatters import Conversation, PreferencePair, SkipRow, unified_diff
from pipeline_lib.provenance import provenance, write_json_atomic

REPORT_NAME = "trajectory_report.json"
MAX_REJECTED_TRIES = 4  # siblings tried per task before the pair is dropped (each try is one sandbox test run)
MAX_SHOWN_LINES = 3  # changed lines quoted in the analysis before apply_patch


@dataclass
class TaskOutcome:
    task_id: str
    trajectory: Conversation | None = None
    pair: PreferencePair | None = None
    drops: list[str] = field(default_factory=list)  # reasons, "trajectory:<r>" / "pair:<r>"


def _run(files: dict[str, str], command: list[str]):
    from pipeline_lib.sandbox import run_files

    return run_files(files, command)


def _changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = diff.splitlines()
    removed = [ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    return removed, added


def patch_analysis(path: str, diff: str) -> str:
    """The reasoning before apply_patch, read off the diff itself (so it is true of the patch it precedes)."""
    removed, added = _changed_lines(diff)

    def quote(lines: list[str]) -> str:
        shown = ", ".join(f"`{line.strip()}`" for line in lines[:MAX_SHOWN_LINES] if line.strip())
        return shown + (f" and {len(lines) - MAX_SHOWN_LINES} more" if len(lines) > MAX_SHOWN_LINES else "")

    if removed and added:
        change = f"{quote(removed)} should be {quote(added)}"
    elif removed:
        change = f"{quote(removed)} should go"
    else:
        change = f"{quote(added)} is missing"
    return f"The failing tests point at `{path}`: {change}. I'll patch that and rerun the tests."


def final_summary(task: dict[str, Any], diff: str) -> str:
    removed, added = _changed_lines(diff)
    return (f"Fixed the bug in `{task['buggy_file']}` ({len(removed)} line(s) replaced by {len(added)}); "
            f"`{' '.join(task['test_command'])}` passes now.")


def fix_messages(task: dict[str, Any], diff: str, applied: str, test_run: str) -> list[dict[str, Any]]:
    """apply_patch(diff) -> the applier's result -> run_tests() -> ``test_run`` -> final summary."""
    return [
        {"role": "assistant", "content": "", "thinking": patch_analysis(task["buggy_file"], diff),
         "tool_calls": [{"name": "apply_patch", "arguments": {"patch": diff}}]},
        {"role": "tool", "name": "apply_patch", "content": applied},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "run_tests", "arguments": {}}]},
        {"role": "tool", "name": "run_tests", "content": test_run},
        {"role": "assistant", "content": final_summary(task, diff)},
    ]


def apply_patch_tool(task: dict[str, Any], diff: str) -> tuple[dict[str, str], str]:
    """(files after the patch, what the apply_patch tool returns); SkipRow when the strict applier refuses it."""
    from pipeline_lib.rewards.patch import PatchError, apply_unified_diff

    try:
        files = apply_unified_diff(diff, dict(task["files"]), only=task["buggy_file"])
    except PatchError as err:
        raise SkipRow("patch_does_not_apply", str(err)) from None
    return files, f"Patch applied to {task['buggy_file']}."


def patch_call_completion(task: dict[str, Any], failure: str, diff: str) -> str:
    """The text a model generates after the task prompt to make this apply_patch call (what GRPO scores)."""
    from pipeline_lib.harmony import encode_harmony_messages, encode_harmony_prompt

    prefix = task_prompt_messages(task, failure)
    call = fix_messages(task, diff, "", "")[0]
    full = encode_harmony_messages([*prefix, call], **render_kwargs())
    prompt = encode_harmony_prompt(prefix, **render_kwargs())
    if not full.startswith(prompt):
        raise SkipRow("prompt_not_prefix")
    return full[len(prompt):]


def siblings_by_distance(task: dict[str, Any], tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Other tasks from the same seed program and file with a different buggy text, nearest to this one first."""
    buggy = task["files"][task["buggy_file"]]
    same = [t for t in tasks if t["id"] != task["id"] and t.get("source") == task.get("source")
            and t["buggy_file"] == task["buggy_file"] and t["files"][t["buggy_file"]] not in (buggy,
                                                                                             task["reference_fix"])]

    def distance(other: dict[str, Any]) -> tuple[int, str]:
        matcher = difflib.SequenceMatcher(None, buggy.splitlines(), other["files"][other["buggy_file"]].splitlines())
        changed = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal")
        return changed, other["id"]

    return sorted(same, key=distance)


def build_task(task: dict[str, Any], tasks: Sequence[dict[str, Any]], *, want_pair: bool = True) -> TaskOutcome:
    """Trajectory (+ IPO pair) for one task, or the reasons they were dropped."""
    from pipeline_lib.rewards import score_completion

    outcome = TaskOutcome(task["id"])
    path, command = task["buggy_file"], task["test_command"]
    try:
        failing = _run(task["files"], command)
        if failing.returncode == 0 and not failing.timed_out:
            raise SkipRow("buggy_passes")
        failure = format_test_run(command, failing.returncode, failing.stdout, failing.stderr, failing.timed_out)
        diff = unified_diff(task["files"][path], task["reference_fix"], path, path)
        fixed_files, applied = apply_patch_tool(task, diff)
        if fixed_files[path] != task["reference_fix"]:
            raise SkipRow("patch_result_differs")
        passing = _run(fixed_files, command)
        if passing.returncode != 0 or passing.timed_out:
            raise SkipRow("reference_fix_fails")
        if not score_completion(task, patch_call_completion(task, failure, diff)).tests_passed:
            raise SkipRow("chosen_not_rewarded")
    except SkipRow as skip:
        outcome.drops.append(f"trajectory:{skip.reason}")
        return outcome
    prefix = task_prompt_messages(task, failure)
    chosen = fix_messages(task, diff, applied, format_test_run(command, passing.returncode, passing.stdout,
                                                               passing.stderr))
    kwargs = render_kwargs()
    outcome.trajectory = Conversation([*prefix, *chosen], kwargs["developer_instructions"], kwargs["tools"],
                                      kwargs["reasoning_effort"])
    if not want_pair:
        return outcome
    reason = "no_sibling"
    for sibling in siblings_by_distance(task, tasks)[:MAX_REJECTED_TRIES]:
        wrong = unified_diff(task["files"][path], sibling["files"][path], path, path)
        try:
            wrong_files, wrong_applied = apply_patch_tool(task, wrong)
        except SkipRow as skip:
            reason = skip.reason
            continue
        run = _run(wrong_files, command)
        if run.returncode == 0 and not run.timed_out:
            reason = "wrong_patch_passes"  # the sibling's edit also fixes the tests: not a rejected answer
            continue
        shown = format_test_run(command, run.returncode, run.stdout, run.stderr, run.timed_out)
        prompt = Conversation([prefix[0]], kwargs["developer_instructions"], kwargs["tools"],
                              kwargs["reasoning_effort"])
        outcome.pair = PreferencePair(prompt, chosen=[*prefix[1:], *chosen],
                                      rejected=[*prefix[1:], *fix_messages(task, wrong, wrong_applied, shown)])
        return outcome
    outcome.drops.append(f"pair:{reason}")
    return outcome


def build_all(tasks: Sequence[dict[str, Any]], *, siblings: Sequence[dict[str, Any]] | None = None,
              want_pairs: bool = True, progress=lambda n: None) -> list[TaskOutcome]:
    """build_task for each of ``tasks``; rejected patches come from ``siblings`` (default: ``tasks``)."""
    outcomes = []
    for task in tasks:
        outcomes.append(build_task(task, tasks if siblings is None else siblings, want_pair=want_pairs))
        progress(1)
    return outcomes


def write_datasets(outcomes: Sequence[TaskOutcome], output_dir: str | Path, tokenizer, *, seed: int = 42,
                   task_file: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render + round-trip (Phase 0's checks), save agent_traj/train and preference/train, write the report."""
    from pipeline_lib.data_prep import render_example, save_category, token_stats

    out = Path(output_dir)
    drops: Counter = Counter(reason for o in outcomes for reason in o.drops)
    rows: dict[str, list] = {"agent_traj": [], "preference": []}
    for outcome in outcomes:
        for category, item in (("agent_traj", outcome.trajectory), ("preference", outcome.pair)):
            if item is None:
                continue
            try:
                rows[category].append(("mutations", render_example(item, tokenizer)))
            except SkipRow as skip:
                drops[f"{'trajectory' if category == 'agent_traj' else 'pair'}:{skip.reason}"] += 1
    report: dict[str, Any] = {"task_file": task_file, "tasks": len(outcomes),
                              "drops": dict(sorted(drops.items())), "categories": {}}
    for category, examples in rows.items():
        if not examples:
            continue
        path = save_category(examples, category, out, seed)
        report["categories"][category] = {"path": str(path), "rows": len(examples),
                                          "tokens": token_stats([e.n_tokens for _, e in examples])}
    report["provenance"] = provenance(config)
    write_json_atomic(out / REPORT_NAME, report)
    return report
