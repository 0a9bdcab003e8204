"""Phase 0: download (or read locally) and format the eight datasets into Harmony training data.

    python scripts/tui_data_prep.py --source hub [--quick-test]
    python scripts/tui_data_prep.py --source local --local-dir data/samples --quick-test   # offline / tiny demo

Writes data/coding_tui/{tool_calling,agent_traj,preference}/train (datasets.save_to_disk), the held-out
data/coding_tui/tool_calling/heldout (rows removed from train, for scripts/eval_coding_agent.py) and
data/coding_tui/prep_report.json (per dataset: rows read, kept, skipped by reason, token lengths; provenance).
Idempotent: existing output is kept unless --force. Exit status 1 when every dataset failed or a category is empty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from pipeline_lib.data_prep import MAX_ROW_CHARS, DataPrepError, Options, load_limits, run, summary_line

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "data_prep.yaml"


def parse_args(argv: list[str] | None = None) -> tuple[Options, dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML defaults (CLI flags win)")
    parser.add_argument("--source", choices=("hub", "local"), help="hub: datasets.load_dataset; local: --local-dir")
    parser.add_argument("--local-dir", type=Path, help="folder of <org>__<name>[__<part>].jsonl files")
    parser.add_argument("--output-dir", type=Path, help="default data/coding_tui")
    parser.add_argument("--quick-test", action="store_true", help="hundreds of rows per dataset (writeup §5)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the output exists")
    parser.add_argument("--max-tokens", type=int, help="drop rows longer than this (counted as too_long)")
    parser.add_argument("--max-row-chars", type=int,
                        help="skip rows with more content characters than this before rendering (too_long)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    config = yaml.safe_load(args.config.read_text()) or {}
    for key in ("source", "local_dir", "output_dir", "max_tokens", "max_row_chars", "seed"):
        if getattr(args, key) is not None:
            config[key] = str(getattr(args, key)) if isinstance(getattr(args, key), Path) else getattr(args, key)
    config["quick_test"], config["force"] = args.quick_test, args.force
    if config.get("source") not in ("hub", "local"):
        parser.error(f"--source must be hub or local, got {config.get('source')!r}")
    if config["source"] == "local":
        if not config.get("local_dir"):
            parser.error("--source local needs --local-dir DIR (the demo uses data/samples)")
        if not Path(config["local_dir"]).is_dir():
            parser.error(f"--local-dir {config['local_dir']}: no such folder")
    for key in ("max_tokens", "max_row_chars"):
        if config.get(key) is not None and int(config[key]) <= 0:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    try:
        limits = load_limits(config)
    except ValueError as err:
        parser.error(f"--config {args.config}: {err}")
    options = Options(
        source=config["source"],
        local_dir=Path(config["local_dir"]) if config.get("local_dir") else None,
        output_dir=Path(config.get("output_dir") or "data/coding_tui"),
        quick_test=args.quick_test,
        force=args.force,
        max_tokens=config.get("max_tokens"),
        max_row_chars=config.get("max_row_chars", MAX_ROW_CHARS),
        seed=int(config.get("seed", 42)),
        limits=limits,
        tool_calling_heldout=heldout_rows(config, args.quick_test),
    )
    return options, config


def heldout_rows(config: dict, quick_test: bool) -> int:
    entry = config.get("tool_calling_heldout") or {"full": 0, "quick": 0}
    if not isinstance(entry, dict) or not {"full", "quick"} <= entry.keys():
        raise SystemExit("configs: tool_calling_heldout must be {full: N, quick: N} (rows held out for evaluation)")
    return int(entry["quick" if quick_test else "full"])


def main(argv: list[str] | None = None) -> int:
    options, config = parse_args(argv)
    try:
        report = run(options, config=config)
    except DataPrepError as err:
        print(f"data prep FAILED: {err}")
        return 1
    print(summary_line(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
