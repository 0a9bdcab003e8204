#!/usr/bin/env python3
"""Turn mutation tasks into Phase 2 agent trajectories and Phase 3 IPO pairs, every tool result from a real run.

    python scripts/15_generate_trajectories.py --language python [--task-file F] [--output-dir D] [--quick-test]

Reads data/<language>/grpo/tasks.jsonl (the TRAIN split of scripts/16_generate_mutations.py; a held-out row is
refused) and writes, in Phase 0's on-disk format (same renderer, round-trip check and writer):
    <output-dir>/agent_traj/train     read_file -> run_tests (real failure) -> apply_patch (buggy -> reference_fix
                                      diff, the reward's applier) -> run_tests (real pass) -> summary
    <output-dir>/preference/train     chosen = that trajectory; rejected = a sibling mutant's wrong patch whose
                                      tests really fail (run in the sandbox)
    <output-dir>/trajectory_report.json   counts, drops by reason, provenance
<output-dir> defaults to data/<language>. Phase 2 and 3 read these unchanged: configs/core_agent.yaml
(14_train_core_agent.py) and 17_ipo_preference.py --train_data_path data/<language>/preference/train.
Every test run goes through pipeline_lib/sandbox.py. Exit status 1 when no trajectory survives.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.agent_tasks import LANGUAGES, load_tasks  # noqa: E402

QUICK_TASKS = 24  # --quick-test: the first 24 tasks (~1.6 s each for Python: 4-5 sandbox runs of ~0.4 s)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--language", required=True, choices=LANGUAGES)
    parser.add_argument("--task-file", type=Path, help="default data/<language>/grpo/tasks.jsonl")
    parser.add_argument("--output-dir", type=Path, help="default data/<language>")
    parser.add_argument("--quick-test", action="store_true", help=f"the first {QUICK_TASKS} tasks only")
    parser.add_argument("--max-tasks", type=int, help="the first N tasks only")
    parser.add_argument("--no-pairs", action="store_true", help="trajectories only (no IPO pairs)")
    parser.add_argument("--seed", type=int, default=42, help="row order of the saved datasets")
    args = parser.parse_args(argv)
    args.task_file = args.task_file or Path("data") / args.language / "grpo" / "tasks.jsonl"
    args.output_dir = args.output_dir or Path("data") / args.language
    if args.max_tasks is not None and args.max_tasks <= 0:
        parser.error("--max-tasks must be positive")
    if not args.task_file.is_file():
        parser.error(f"--task-file {args.task_file}: no such file (scripts/16_generate_mutations.py --language "
                     f"{args.language} writes it)")
    return args


def main(argv: list[str] | None = None) -> int:
    from rich.progress import Progress

    from pipeline_lib.tokenizer import load_gpt_oss_tokenizer
    from pipeline_lib.trajectories import build_all, write_datasets

    args = parse_args(argv)
    limit = min(x for x in (args.max_tasks, QUICK_TASKS if args.quick_test else None, 10**9) if x is not None)
    tasks = load_tasks(args.task_file)
    heldout = [t["id"] for t in tasks if t.get("split") == "heldout"]
    if heldout:
        print(f"{args.task_file}: {len(heldout)} held-out task(s) (e.g. {heldout[0]}): held-out tasks are for "
              "evaluation only; pass the train split (tasks.jsonl)", file=sys.stderr)
        return 2
    chosen = tasks[:limit]
    with Progress() as progress:
        bar = progress.add_task("trajectories", total=len(chosen))
        # siblings for rejected patches come from every task of the file, not only the first N
        outcomes = build_all(chosen, siblings=tasks, want_pairs=not args.no_pairs,
                             progress=lambda n: progress.advance(bar, n))
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = write_datasets(outcomes, args.output_dir, load_gpt_oss_tokenizer(), seed=args.seed,
                            task_file=str(args.task_file), config=config)
    counts = ", ".join(f"{c} {v['rows']}" for c, v in report["categories"].items()) or "nothing"
    drops = ", ".join(f"{k} {v}" for k, v in report["drops"].items()) or "none"
    print(f"trajectories: {len(chosen)} tasks -> {counts}; drops: {drops}; report {args.output_dir}/"
          "trajectory_report.json")
    return 0 if "agent_traj" in report["categories"] else 1


if __name__ == "__main__":
    sys.exit(main())
