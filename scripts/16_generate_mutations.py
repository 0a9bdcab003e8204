#!/usr/bin/env python3
"""Phase 4 data: mutation tasks (a seed program with one injected bug, its failing tests, and the fix).

    python3 scripts/16_generate_mutations.py --language python                      # bundled corpus, all mutants
    python3 scripts/16_generate_mutations.py --language rust --max-per-program 2    # quick (make demo)
    python3 scripts/16_generate_mutations.py --language python --source my_corpus/ --output-dir data/mine

Writes <output-dir>/tasks.jsonl (train), heldout.jsonl (whole seed programs never trained on, chosen by a seeded
hash of the program name) and mutation_report.json (generated / kept / dropped by reason, per operator and per
program, seed programs whose own tests fail, provenance). Default output dir: data/<language>/grpo/.

A mutant is kept only if its tests really fail when run in pipeline_lib.sandbox (no sandbox here: exit 2);
dropped: duplicate (same text as another mutant or the original), equivalent (tests still pass), timeout,
does_not_compile (Rust: a build error teaches the compiler, not the bug, so it is not a task), render_mismatch.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib import phases  # noqa: E402
from pipeline_lib.mutations import (
    CORPUS_LAYOUT,
    LANGUAGES,
    CorpusError,
    ToolchainMissing,
    check_toolchain,
    default_runner,
    default_source,
    generate,
    load_corpus,
    write_outputs,
)
from pipeline_lib.sandbox import SandboxUnavailable

REPO_ROOT = Path(__file__).resolve().parents[1]

LAYOUT_HELP = "\n".join(f"  {lang}: {text}" for lang, text in CORPUS_LAYOUT.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Corpus layout for --source DIR (the bundled one is data/seed_corpus/<language>/):\n{LAYOUT_HELP}")
    parser.add_argument("--language", required=True, choices=LANGUAGES)
    parser.add_argument("--source", type=Path, default=None,
                        help="seed corpus folder (default: data/seed_corpus/<language>)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: data/<language>/grpo")
    parser.add_argument("--seed", type=int, default=0, help="held-out choice and per-program mutant order")
    parser.add_argument("--heldout-fraction", type=float, default=0.2,
                        help="fraction of seed PROGRAMS held out for evaluation (default 0.2)")
    parser.add_argument("--max-per-program", type=int, default=None,
                        help="keep at most N mutants per program (default: all)")
    parser.add_argument("--programs", type=int, default=None,
                        help="use only the first N programs (alphabetical), e.g. for a quick demo")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per test run (default 10 for Python, 60 for Rust)")
    parser.add_argument("--jobs", type=int, default=2, help="test runs in parallel (default 2)")
    args = parser.parse_args(argv)
    if args.max_per_program is not None and args.max_per_program < 1:
        parser.error("--max-per-program must be >= 1")
    if args.programs is not None and args.programs < 1:
        parser.error("--programs must be >= 1")
    if not 0 <= args.heldout_fraction < 1:
        parser.error(f"--heldout-fraction must be in [0, 1), got {args.heldout_fraction}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_toolchain(args.language)
    except ToolchainMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = args.source or default_source(args.language)
    output_dir = args.output_dir or REPO_ROOT / phases.TASKS_DIR.format(language=args.language)
    try:
        programs = load_corpus(args.language, source)
    except CorpusError as exc:
        print(f"error: bad seed corpus: {exc}", file=sys.stderr)
        return 2
    if args.programs is not None:
        programs = programs[:args.programs]
    runner, runner_name = default_runner()
    print(f"[16] {args.language}: {len(programs)} seed programs from {source}; runner={runner_name}; "
          f"max_per_program={args.max_per_program}; heldout_fraction={args.heldout_fraction}", flush=True)
    started = time.monotonic()
    try:
        result = generate(args.language, programs, runner=runner, runner_name=runner_name, seed=args.seed,
                          heldout_fraction=args.heldout_fraction, max_per_program=args.max_per_program,
                          timeout=args.timeout, jobs=args.jobs, log=lambda msg: print(f"[16] {msg}", flush=True))
    except SandboxUnavailable as exc:
        print(f"error: mutants are only run in the sandbox, which is unavailable here: {exc}", file=sys.stderr)
        return 2
    paths = write_outputs(result, output_dir, source_dir=str(source), config={
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
    totals = result.report["totals"]
    dropped = ", ".join(f"{k} {v}" for k, v in totals["dropped"].items() if v)
    print(f"[16] generated {totals['generated']}, kept {totals['kept']} ({len(result.train)} train / "
          f"{len(result.heldout)} held-out), dropped: {dropped or 'none'}, skipped by cap {totals['skipped_by_cap']}"
          f" in {time.monotonic() - started:.1f} s", flush=True)
    failures = result.report["seed_failures"]
    if failures:
        print(f"[16] WARNING: {len(failures)} seed program(s) fail their own tests and were not used: "
              f"{', '.join(f['file'] for f in failures)}", file=sys.stderr)
    print(f"[16] wrote {paths['train']}, {paths['heldout']}, {paths['report']}")
    if not result.train:
        print("error: no training task was kept", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
