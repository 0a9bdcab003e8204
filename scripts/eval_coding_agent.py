#!/usr/bin/env python3
"""Evaluate a coding agent: pass@1 by execution on held-out tasks + tool-call accuracy on held-out Phase 0 rows.

    python scripts/eval_coding_agent.py --config configs/python_eval.yaml
    python scripts/eval_coding_agent.py --config configs/rust_eval.yaml --adapter checkpoints/agent_sft/final \\
        --stage agent_sft --max-tasks 20

The YAML gives the defaults, CLI flags win (--model, --adapter, --stage, --output-dir, --max-tasks,
--max-tool-examples, --max-new-tokens, --batch-size, --skip-tasks, --skip-tool-calls; all in --help).
- pass@1: one greedy completion per held-out task (data/<language>/grpo/heldout.jsonl) from the prompt GRPO uses
  (pipeline_lib/agent_tasks.py), scored in the sandbox by pipeline_lib.rewards.score_completion (tests_passed).
- tool-call accuracy: one greedy completion per held-out tool-calling row (data/coding_tui/tool_calling/heldout,
  never trained on); correct = valid Harmony, right function, arguments equal as JSON.
Writes <output_dir>/<stage>.json (metrics, every row, provenance) and <stage>.md; prints one summary line.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.evaluation import EvalConfig, HFGenerator, metrics_of, run_evaluation, write_report  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    from trl import TrlParser

    try:
        (config,) = TrlParser([EvalConfig]).parse_args_and_config(argv)
    except (FileNotFoundError, ValueError) as exc:  # EvalConfig's checks name the flag and the file
        print(f"eval_coding_agent.py: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.monotonic()
    generate = HFGenerator.load(config.model, config.adapter)
    result = run_evaluation(config, generate)
    result["seconds"] = round(time.monotonic() - start, 1)
    json_path, md_path = write_report(result, config.output_dir, config.stage, asdict(config))
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in metrics_of(result).items() if v is not None)
    print(f"eval {config.stage}: {metrics} ({result['seconds']} s) -> {json_path}, {md_path}")
    return result


if __name__ == "__main__":
    main()
