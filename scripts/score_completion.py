"""Score one completion on one task by execution in the sandbox; print one JSON line.

    python scripts/score_completion.py --task-file data/python/grpo/tasks.jsonl --task-id ID --completion FILE

FILE (or ``-`` for stdin) holds what the model generated after ``<|start|>assistant``: an apply_patch call with a
unified diff, or a final answer with one fenced block holding the whole fixed file. The line has every ``Score``
field (``reward`` 0..1, ``tests_passed``, the stages, ``error``), ``run_isolation`` (what this run had) and
``isolation`` (what the sandbox achieves on this machine, measured by a probe). Exit status: 0 when scored (whatever
the reward), 2 for bad input, 3 when the sandbox is unavailable here (nothing was run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.rewards import RewardWeights, load_task, score_completion
from pipeline_lib.sandbox import SandboxUnavailable, isolation_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task-file", required=True, help="tasks.jsonl (one task row per line)")
    parser.add_argument("--task-id", required=True, help="the row's id")
    parser.add_argument("--completion", required=True, help="file with the completion text, or - for stdin")
    parser.add_argument("--partial-credit", action="store_true", help="shaped reward (RewardWeights.partial_credit)")
    args = parser.parse_args(argv)
    try:
        task = load_task(args.task_file, args.task_id)
        completion = sys.stdin.read() if args.completion == "-" else Path(args.completion).read_text()
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        score = score_completion(task, completion, RewardWeights(partial_credit=args.partial_credit))
    except SandboxUnavailable as exc:
        print(json.dumps({"reward": None, "tests_passed": None, "error": f"sandbox unavailable: {exc}",
                          "isolation": isolation_report()}))
        return 3
    line = score.to_dict()
    line["run_isolation"] = line.pop("isolation")
    line["isolation"] = isolation_report()
    line["task_id"] = task["id"]
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
