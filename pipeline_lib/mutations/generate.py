"""Mutation tasks: mutate seed programs, keep the mutants whose tests really fail, split, write rows + report.

    python scripts/16_generate_mutations.py --language python    # -> data/python/grpo/{tasks,heldout}.jsonl

Every run of a test suite goes through ``pipeline_lib.sandbox.run_files`` (``sandbox_runner``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib import sandbox
from pipeline_lib.agent_tasks import normalise_test_output
from pipeline_lib.mutations.common import Mutant
from pipeline_lib.mutations.corpus import SeedProgram
from pipeline_lib.mutations.python_ops import python_mutants
from pipeline_lib.mutations.rust_ops import rust_mutants
from pipeline_lib.provenance import provenance, write_json_atomic

LANGUAGES = ("python", "rust", "go", "typescript")
# Tools each language needs on PATH; checked before anything runs so a missing one is named in one clear line.
REQUIRED_TOOLS = {"python": (), "rust": ("cargo",), "go": ("go",), "typescript": ("node", "tsc")}
# Wall-clock limit for the ORIGINAL's test run. A mutant gets MUTANT_TIMEOUT_FACTOR x the original's time plus a
# floor (its own process start-up / rebuild) and at most this: the seed suites take 0.05-0.3 s (Python) and
# 0.6-2 s to build + test (Rust), so a mutant still running after that is an infinite loop (dropped as "timeout");
# a fixed 10 s made 19 timeouts cost 190 s of a 223 s run over 5 programs.
DEFAULT_TIMEOUT = {"python": 10.0, "rust": 60.0}
MUTANT_TIMEOUT_FACTOR = 5.0
MUTANT_TIMEOUT_FLOOR = {"python": 3.0, "rust": 10.0}
EXCERPT_CHARS = 1200
DROP_REASONS = ("duplicate", "render_mismatch", "equivalent", "timeout", "does_not_compile")
# rustc's and cargo's markers of a build failure. Not a bare "error:": a failing test also ends with cargo's
# "error: test failed, to rerun pass `--lib`".
COMPILE_ERROR_RE = re.compile(r"^error\[E\d+\]|could not compile", re.MULTILINE)


class ToolchainMissing(RuntimeError):
    """The language's toolchain is not installed here; the message names the missing tool."""


@dataclass
class SuiteRun:
    """What one test-suite run produced (the fields of ``pipeline_lib.sandbox.RunResult`` this module reads)."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolation: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[Mapping[str, str], Sequence[str], float], SuiteRun]


def check_toolchain(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"--language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    missing = [tool for tool in REQUIRED_TOOLS[language] if shutil.which(tool) is None]
    if missing:
        raise ToolchainMissing(f"{language}: {' and '.join(missing)} not found on PATH; install the {language} "
                               f"toolchain to generate {language} tasks on this machine")
    if language in ("go", "typescript"):
        raise ToolchainMissing(f"{language}: the toolchain is here but this project has no {language} seed corpus "
                               f"or mutator yet (python and rust are supported)")


def sandbox_runner(files: Mapping[str, str], argv: Sequence[str], timeout: float) -> SuiteRun:
    """Run a task's tests in pipeline_lib.sandbox (fresh temp dir, limits, no network, scrubbed env)."""
    limits = sandbox.Limits(wall_seconds=timeout, cpu_seconds=max(1, int(timeout)))
    result = sandbox.run_files(files, argv, limits)
    return SuiteRun(result.returncode, result.stdout, result.stderr, result.timed_out, result.seconds,
                   result.isolation)


def default_runner() -> tuple[Runner, str]:
    """(runner, name) used by the script: the sandbox (it raises SandboxUnavailable where it cannot isolate)."""
    return sandbox_runner, "sandbox"


def failure_excerpt(run: SuiteRun, files: Iterable[str], limit: int = EXCERPT_CHARS) -> str:
    """The informative part of a failing run's output, temp-dir paths, thread ids and timings removed
    (``agent_tasks.normalise_test_output``: regenerating gives the same bytes), at most ``limit`` characters."""
    text = normalise_test_output(run.stdout + "\n" + run.stderr).strip()
    for name in files:
        text = re.sub(r"[^\s\"'(]*/(?=" + re.escape(name) + r"\b)", "", text)
    starts = [i for marker in ("\n=====", "\nfailures:", "\nerror", "\n---- ") if (i := text.find(marker)) >= 0]
    if starts:
        text = text[min(starts) + 1:]
    if len(text) <= limit:
        return text
    # keep the verdict line too ("FAILED (failures=2)" / "test result: FAILED. ...") when the middle is cut
    verdict = next((line for line in reversed(text.splitlines()) if "FAILED" in line), "")
    return text[:limit].rstrip() + "\n[...]" + (f"\n{verdict}" if verdict else "")


def classify(language: str, run: SuiteRun) -> str:
    """kept | equivalent | timeout | does_not_compile for one mutant's test run."""
    if run.timed_out:
        return "timeout"
    if run.returncode == 0:
        return "equivalent"
    if language == "rust" and COMPILE_ERROR_RE.search(run.stdout + run.stderr):
        return "does_not_compile"
    return "kept"


def mutants_for(language: str, program: SeedProgram) -> tuple[list[Mutant], list[Mutant]]:
    """(mutants, render mismatches) of the program's target file."""
    source = program.files[program.target]
    if language == "python":
        return python_mutants(source, program.origin)
    if language == "rust":
        return rust_mutants(source), []
    raise ValueError(f"no mutator for {language}")


def split_programs(names: Sequence[str], fraction: float, seed: int) -> set[str]:
    """Held-out program names: the ``round(fraction * n)`` names first in a seeded hash order (at least one when
    fraction > 0 and there are two or more programs), so adding a program never moves the others."""
    if not 0 <= fraction < 1:
        raise ValueError(f"--heldout-fraction must be in [0, 1), got {fraction}")
    ranked = sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
    count = round(fraction * len(ranked))
    if fraction > 0 and len(ranked) >= 2:
        count = max(1, min(count, len(ranked) - 1))
    return set(ranked[:count])


def _interleave(mutants: list[tuple[str, Mutant]], rng: random.Random) -> list[tuple[str, Mutant]]:
    """Seeded order that cycles through operators, so a per-program cap keeps a mix of operators."""
    by_op: dict[str, list[tuple[str, Mutant]]] = defaultdict(list)
    for item in mutants:
        by_op[item[1].operator].append(item)
    for items in by_op.values():
        rng.shuffle(items)
    ops = sorted(by_op)
    rng.shuffle(ops)
    order = []
    while any(by_op.values()):
        for op in ops:
            if by_op[op]:
                order.append(by_op[op].pop(0))
    return order


def _counts() -> dict[str, Any]:
    return {"generated": 0, "kept": 0, "skipped_by_cap": 0, "dropped": dict.fromkeys(DROP_REASONS, 0)}


@dataclass
class Generation:
    """Result of one generation run: task rows and the report."""

    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    report: dict[str, Any]


def generate(language: str, programs: Sequence[SeedProgram], *, runner: Runner, runner_name: str = "custom",
             seed: int = 0, heldout_fraction: float = 0.2, max_per_program: int | None = None,
             timeout: float | None = None, jobs: int = 1,
             extra_mutants: Mapping[str, Sequence[Mutant]] | None = None,
             log: Callable[[str], None] = lambda _msg: None) -> Generation:
    """Mutate every program, run each candidate's tests, keep the failing ones, and split by program.

    ``extra_mutants`` (program name -> mutants) adds hand-made mutants to the operators' ones (tests use it for
    negative controls). ``max_per_program`` caps the KEPT mutants per program; candidates are tried in a seeded
    order that cycles through operators and stop once the cap is reached."""
    timeout = timeout or DEFAULT_TIMEOUT.get(language, 60.0)
    started = time.monotonic()
    heldout_names = split_programs([p.name for p in programs], heldout_fraction, seed)
    totals, per_op = _counts(), defaultdict(_counts)
    per_program: dict[str, dict[str, Any]] = {}
    seed_failures, render_mismatches = [], []
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    isolation: dict[str, Any] = {}
    mutations: dict[str, str] = {}  # kept id -> what was changed (the rows stay exactly the task contract)

    def count(op: str, key: str, program_counts: dict[str, Any], n: int = 1) -> None:
        for bucket in (totals, per_op[op], program_counts):
            if key in DROP_REASONS:
                bucket["dropped"][key] += n
            else:
                bucket[key] += n

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for program in programs:
            prog_start = time.monotonic()
            split = "heldout" if program.name in heldout_names else "train"
            pc = {"split": split, "origin": program.origin, **_counts()}
            per_program[program.name] = pc
            original = runner(program.files, program.test_command, timeout)
            isolation = isolation or original.isolation
            if original.timed_out or original.returncode != 0:
                pc["original"] = "timeout" if original.timed_out else f"failed (exit {original.returncode})"
                seed_failures.append({"program": program.name, "file": program.origin, "status": pc["original"],
                                      "output": failure_excerpt(original, program.files)})
                log(f"SEED FAILS {program.name} ({program.origin}): {pc['original']} - not used")
                continue
            pc["original"] = "passed"
            mutant_timeout = min(timeout, MUTANT_TIMEOUT_FLOOR.get(language, 20.0)
                                 + MUTANT_TIMEOUT_FACTOR * original.seconds)
            mutants, mismatches = mutants_for(language, program)
            mutants = [*mutants, *(extra_mutants or {}).get(program.name, ())]
            for bad in mismatches:
                count(bad.operator, "generated", pc)
                count(bad.operator, "render_mismatch", pc)
                render_mismatches.append({"program": program.name, "operator": bad.operator,
                                          "description": bad.description})
            # ids are stable: the index of a mutant among its program's mutants of the same operator
            numbered, per_op_index, seen = [], Counter(), {program.files[program.target]}
            for mutant in mutants:
                count(mutant.operator, "generated", pc)
                mutant_id = f"{language}-{program.name}-{mutant.operator}-{per_op_index[mutant.operator]}"
                per_op_index[mutant.operator] += 1
                if mutant.source in seen:
                    count(mutant.operator, "duplicate", pc)
                    continue
                seen.add(mutant.source)
                numbered.append((mutant_id, mutant))
            order = _interleave(numbered, random.Random(f"{seed}:{program.name}"))
            kept_rows: list[dict[str, Any]] = []
            batch = max(1, jobs)
            position = 0
            while position < len(order):
                if max_per_program is not None and len(kept_rows) >= max_per_program:
                    break
                chunk = order[position:position + batch]
                position += len(chunk)
                runs = pool.map(runner, [{**program.files, program.target: m.source} for _i, m in chunk],
                                [program.test_command] * len(chunk), [mutant_timeout] * len(chunk))
                for (mutant_id, mutant), run in zip(chunk, runs, strict=True):
                    verdict = classify(language, run)
                    if verdict == "kept" and max_per_program is not None and len(kept_rows) >= max_per_program:
                        count(mutant.operator, "skipped_by_cap", pc)
                        continue
                    count(mutant.operator, verdict, pc)
                    if verdict != "kept":
                        continue
                    kept_rows.append({
                        "id": mutant_id, "language": language,
                        "files": {**program.files, program.target: mutant.source},
                        "buggy_file": program.target, "test_command": list(program.test_command),
                        "reference_fix": program.files[program.target], "operator": mutant.operator,
                        "source": program.name, "split": split, "failure": failure_excerpt(run, program.files),
                    })
                    mutations[mutant_id] = mutant.description
            for _mutant_id, mutant in order[position:]:
                count(mutant.operator, "skipped_by_cap", pc)
            kept_rows.sort(key=lambda r: r["id"])
            rows[split].extend(kept_rows)
            pc["seconds"] = round(time.monotonic() - prog_start, 2)
            log(f"{program.name:<24} {split:<7} generated {pc['generated']:>3}  kept {pc['kept']:>3}  "
                f"dropped {sum(pc['dropped'].values()):>3}  ({pc['seconds']:.1f} s)")
    report = {
        "language": language,
        "runner": runner_name,
        "isolation": isolation,
        "seed": seed,
        "heldout_fraction": heldout_fraction,
        "max_per_program": max_per_program,
        "timeout_seconds": timeout,
        "programs": len(programs),
        "programs_used": len(programs) - len(seed_failures),
        "heldout_programs": sorted(heldout_names),
        "rows": {"train": len(rows["train"]), "heldout": len(rows["heldout"])},
        "totals": totals,
        "per_operator": dict(sorted(per_op.items())),
        "per_program": per_program,
        "seed_failures": seed_failures,
        "render_mismatches": render_mismatches,
        "seconds": round(time.monotonic() - started, 1),
        "mutations": dict(sorted(mutations.items())),
    }
    return Generation(rows["train"], rows["heldout"], report)


def write_jsonl_atomic(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_outputs(result: Generation, output_dir: Path, *, source_dir: str,
                  config: dict[str, Any] | None = None) -> dict[str, Path]:
    """tasks.jsonl (train), heldout.jsonl and mutation_report.json (with provenance) in ``output_dir``."""
    paths = {"train": output_dir / "tasks.jsonl", "heldout": output_dir / "heldout.jsonl",
             "report": output_dir / "mutation_report.json"}
    write_jsonl_atomic(paths["train"], result.train)
    write_jsonl_atomic(paths["heldout"], result.heldout)
    report = {**result.report, "source_dir": source_dir,
              "outputs": {k: str(v) for k, v in paths.items() if k != "report"},
              "provenance": provenance(config)}
    write_json_atomic(paths["report"], report)
    return paths
