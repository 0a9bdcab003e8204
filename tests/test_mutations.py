"""Mutation tasks (issue 7, deliverable 1): operators, verification by execution, split, report, CLI."""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline_lib import agent_tasks
from pipeline_lib.mutations import (
    PYTHON_OPERATORS,
    RUST_OPERATORS,
    CorpusError,
    Mutant,
    ToolchainMissing,
    check_toolchain,
    default_runner,
    default_source,
    generate,
    load_corpus,
    python_mutants,
    rust_mutants,
    split_programs,
)
from pipeline_lib.mutations.generate import DROP_REASONS, SuiteRun, classify, failure_excerpt

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER, RUNNER_NAME = default_runner()

PY_SNIPPET = '''"""Doc string stays."""


def f(a, b, items):
    if a < b:
        return b - a
    total = 0
    for x in items:
        total += x * 2
    flag = a > 0 and not b
    name = ","
    pair = divmod(a, b)
    ok = True
    if x == 3 if items else a:
        pass
    return total, flag, name, pair, ok
'''

# (operator, line, old text, new text): every mutant the Python operators must produce on PY_SNIPPET.
PY_EXPECTED = {
    ("flip_comparison", 5, "    if a < b:", "    if a > b:"),
    ("boundary_comparison", 5, "    if a < b:", "    if a <= b:"),
    ("negate_condition", 5, "    if a < b:", "    if not a < b:"),
    ("swap_operands", 6, "        return b - a", "        return a - b"),
    ("wrong_arithmetic", 6, "        return b - a", "        return b + a"),
    ("remove_guard", 5, None, None),
    ("off_by_one", 7, "    total = 0", "    total = 1"),
    ("remove_statement", 7, None, None),
    ("wrong_arithmetic", 9, "        total += x * 2", "        total -= x * 2"),
    ("wrong_arithmetic", 9, "        total += x * 2", "        total += x + 2"),
    ("off_by_one", 9, "        total += x * 2", "        total += x * 3"),
    ("off_by_one", 9, "        total += x * 2", "        total += x * 1"),
    ("flip_comparison", 10, "    flag = a > 0 and not b", "    flag = a < 0 and not b"),
    ("boundary_comparison", 10, "    flag = a > 0 and not b", "    flag = a >= 0 and not b"),
    ("off_by_one", 10, "    flag = a > 0 and not b", "    flag = a > 1 and not b"),
    ("wrong_boolean", 10, "    flag = a > 0 and not b", "    flag = a > 0 or not b"),
    ("remove_not", 10, "    flag = a > 0 and not b", "    flag = a > 0 and b"),
    ("remove_statement", 10, None, None),
    ("wrong_constant", 11, '    name = ","', '    name = ";"'),
    ("remove_statement", 11, None, None),
    ("swap_arguments", 12, "    pair = divmod(a, b)", "    pair = divmod(b, a)"),
    ("remove_statement", 12, None, None),
    ("wrong_constant", 13, "    ok = True", "    ok = False"),
    ("remove_statement", 13, None, None),
    ("negate_comparison", 14, "    if x == 3 if items else a:", "    if x != 3 if items else a:"),
    ("off_by_one", 14, "    if x == 3 if items else a:", "    if x == 4 if items else a:"),
    ("off_by_one", 14, "    if x == 3 if items else a:", "    if x == 2 if items else a:"),
    ("negate_condition", 14, "    if x == 3 if items else a:", "    if not (x == 3 if items else a):"),
    ("negate_condition", 14, "    if x == 3 if items else a:", "    if x == 3 if not items else a:"),
}


def _changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_python_operators_make_exactly_the_expected_one_line_changes():
    mutants, mismatches = python_mutants(PY_SNIPPET)
    assert mismatches == []
    seen = set()
    for m in mutants:
        removed, added = _changed_lines(PY_SNIPPET, m.source)
        if m.operator in ("remove_guard", "remove_statement"):
            assert added == [] and removed, m
            seen.add((m.operator, m.line, None, None))
        else:
            assert len(removed) == len(added) == 1, m  # one line changed, everything else byte-identical
            seen.add((m.operator, m.line, removed[0], added[0]))
    # the docstring and the `pass`/`return` lines are never touched
    assert not any(m.line in (1, 15, 16) for m in mutants)
    assert seen - PY_EXPECTED == set(), "unexpected mutants"
    assert PY_EXPECTED - seen == set(), "missing mutants"
    assert {m.operator for m in mutants} == set(PY_OPERATORS_COVERED) == set(PYTHON_OPERATORS)
    remove_guard = next(m for m in mutants if m.operator == "remove_guard")
    assert _changed_lines(PY_SNIPPET, remove_guard.source)[0] == ["    if a < b:", "        return b - a"]


PY_OPERATORS_COVERED = {op for op, *_ in PY_EXPECTED}


def test_python_swap_keeps_precedence_and_render_check_catches_mismatch():
    source = "def g(a, b, c):\n    return (a - b) - c * 2\n"
    mutants, mismatches = python_mutants(source)
    assert mismatches == []
    # '*' -> '+' inside a '-' needs parentheses to mean what the tree means
    assert "    return (a - b) - (c + 2)\n" in {m.source.splitlines(True)[1] for m in mutants}
    swaps = {m.source.splitlines()[1].strip() for m in mutants if m.operator == "swap_operands"}
    assert swaps == {"return (c * 2) - (a - b)", "return (b - a) - c * 2"}


RUST_SNIPPET = '''//! Doc: a < b and x - 1 stay in comments.
use std::collections::HashMap;

pub fn f(a: i64, b: i64, v: &Vec<i64>) -> i64 {
    let s = "a < b"; // not a comparison either
    if a < b {
        return b - a;
    }
    let mut total = 0;
    for x in v.iter() {
        total += x * 2;
    }
    let flag = a > 0 && !s.is_empty();
    let c = ',';
    let m: HashMap<i64, i64> = HashMap::new();
    let _same = a == b;
    total + m.len() as i64 + flag as i64 + c as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t() {
        assert!(f(1, 2, &vec![3]) > 0);
    }
}
'''

RUST_EXPECTED = {
    ("flip_comparison", 6, "    if a < b {", "    if a > b {"),
    ("boundary_comparison", 6, "    if a < b {", "    if a <= b {"),
    ("negate_condition", 6, "    if a < b {", "    if !(a < b) {"),
    ("remove_guard", 6, None, None),
    ("swap_operands", 7, "        return b - a;", "        return a - b;"),
    ("wrong_arithmetic", 7, "        return b - a;", "        return b + a;"),
    ("off_by_one", 9, "    let mut total = 0;", "    let mut total = 1;"),
    ("wrong_arithmetic", 11, "        total += x * 2;", "        total -= x * 2;"),
    ("wrong_arithmetic", 11, "        total += x * 2;", "        total += x + 2;"),
    ("off_by_one", 11, "        total += x * 2;", "        total += x * 3;"),
    ("off_by_one", 11, "        total += x * 2;", "        total += x * 1;"),
    ("remove_statement", 11, None, None),
    ("flip_comparison", 13, "    let flag = a > 0 && !s.is_empty();", "    let flag = a < 0 && !s.is_empty();"),
    ("boundary_comparison", 13, "    let flag = a > 0 && !s.is_empty();", "    let flag = a >= 0 && !s.is_empty();"),
    ("off_by_one", 13, "    let flag = a > 0 && !s.is_empty();", "    let flag = a > 1 && !s.is_empty();"),
    ("wrong_boolean", 13, "    let flag = a > 0 && !s.is_empty();", "    let flag = a > 0 || !s.is_empty();"),
    ("remove_not", 13, "    let flag = a > 0 && !s.is_empty();", "    let flag = a > 0 && s.is_empty();"),
    ("wrong_constant", 14, "    let c = ',';", "    let c = ';';"),
    ("negate_comparison", 16, "    let _same = a == b;", "    let _same = a != b;"),
    ("wrong_arithmetic", 17, "    total + m.len() as i64 + flag as i64 + c as i64",
     "    total - m.len() as i64 + flag as i64 + c as i64"),
    ("wrong_arithmetic", 17, "    total + m.len() as i64 + flag as i64 + c as i64",
     "    total + m.len() as i64 - flag as i64 + c as i64"),
    ("wrong_arithmetic", 17, "    total + m.len() as i64 + flag as i64 + c as i64",
     "    total + m.len() as i64 + flag as i64 - c as i64"),
}


def test_rust_operators_skip_comments_strings_generics_and_tests():
    mutants = rust_mutants(RUST_SNIPPET)
    seen = set()
    for m in mutants:
        removed, added = _changed_lines(RUST_SNIPPET, m.source)
        if m.operator in ("remove_guard", "remove_statement"):
            assert added == [] and removed, m
            seen.add((m.operator, m.line, None, None))
        else:
            assert len(removed) == len(added) == 1, m
            seen.add((m.operator, m.line, removed[0], added[0]))
        test_part = RUST_SNIPPET[RUST_SNIPPET.index("#[cfg(test)]"):]
        assert m.source.endswith(test_part), m  # the tests module is never mutated
    assert seen - RUST_EXPECTED == set(), "unexpected mutants"
    assert RUST_EXPECTED - seen == set(), "missing mutants"
    assert {op for op, *_ in RUST_EXPECTED} == set(RUST_OPERATORS)


def test_split_is_by_program_seeded_and_stable():
    names = [f"p{i}" for i in range(10)]
    held = split_programs(names, 0.2, seed=0)
    assert len(held) == 2 and held == split_programs(list(reversed(names)), 0.2, seed=0)
    assert held <= split_programs([*names, "extra"], 0.3, seed=0) | held  # adding a program keeps the order
    assert split_programs(names, 0.0, seed=0) == set()
    assert split_programs(["only"], 0.5, seed=0) == set()
    assert len(split_programs(["a", "b"], 0.01, seed=1)) == 1
    with pytest.raises(ValueError):
        split_programs(names, 1.0, seed=0)


def test_classify_and_excerpt():
    ok = SuiteRun(0, "", "OK", False, 0.1)
    assert classify("python", ok) == "equivalent"
    assert classify("python", SuiteRun(None, "", "", True, 3.0)) == "timeout"
    failing = SuiteRun(101, "failures:\n---- t stdout ----\npanicked", "error: test failed, to rerun pass `--lib`",
                      False, 1.0)
    assert classify("rust", failing) == "kept"  # cargo's "error: test failed" is not a build error
    broken = SuiteRun(101, "", "error[E0308]: mismatched types\nerror: could not compile `x`", False, 1.0)
    assert classify("rust", broken) == "does_not_compile"
    long_run = SuiteRun(1, "", "noise\n======\nFAIL: x\n  File \"/tmp/abc/m.py\", line 3\n" + "y" * 5000
                       + "\nFAILED (failures=1)", False, 0.1)
    text = failure_excerpt(long_run, ["m.py"], limit=200)
    assert text.startswith("======") and '"m.py"' in text and "/tmp/abc" not in text
    assert text.endswith("FAILED (failures=1)") and len(text) < 260


def _write_program(folder: Path, name: str, body: str, tests: str) -> None:
    (folder / f"{name}.py").write_text(body)
    (folder / f"test_{name}.py").write_text(tests)


ABS_BODY = "def absolute(x):\n    if x < 0:\n        return -x\n    return x\n"
ABS_TESTS = ("import unittest\n\nfrom absolute import absolute\n\n\nclass T(unittest.TestCase):\n"
             "    def test_abs(self):\n        self.assertEqual(absolute(-3), 3)\n"
             "        self.assertEqual(absolute(4), 4)\n        self.assertEqual(absolute(0), 0)\n")
SIGN_BODY = "def sign(x):\n    if x > 0:\n        return 1\n    if x < 0:\n        return -1\n    return 0\n"
SIGN_TESTS = ("import unittest\n\nfrom sign import sign\n\n\nclass T(unittest.TestCase):\n"
              "    def test_sign(self):\n        self.assertEqual([sign(v) for v in (-5, 0, 7)], [-1, 0, 1])\n")


@pytest.fixture()
def user_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write_program(corpus, "absolute", ABS_BODY, ABS_TESTS)
    _write_program(corpus, "sign", SIGN_BODY, SIGN_TESTS)
    return corpus


def test_generate_keeps_only_really_failing_mutants_with_negative_controls(user_corpus: Path):
    programs = load_corpus("python", user_corpus)
    # Negative controls: a no-op "mutation" (same text) and an equivalent one (x < 0 -> 0 > x) must be dropped.
    noop = Mutant("noop", ABS_BODY, 2, "no change")
    equivalent = Mutant("equivalent_rewrite", ABS_BODY.replace("x < 0", "0 > x"), 2, "same behaviour")
    result = generate("python", programs, runner=RUNNER, heldout_fraction=0.5, seed=0,
                      extra_mutants={"absolute": [noop, equivalent]})
    report = result.report
    per = report["per_operator"]
    assert per["noop"]["dropped"]["duplicate"] == 1 and per["noop"]["kept"] == 0
    assert per["equivalent_rewrite"]["dropped"]["equivalent"] == 1 and per["equivalent_rewrite"]["kept"] == 0
    rows = result.train + result.heldout
    assert rows and report["totals"]["kept"] == len(rows)
    # held-out split is by program and shares no source with train
    assert {r["source"] for r in result.train}.isdisjoint({r["source"] for r in result.heldout})
    assert len(report["heldout_programs"]) == 1
    assert {r["split"] for r in result.heldout} == {"heldout"} and {r["split"] for r in result.train} == {"train"}
    # the counts add up everywhere
    for bucket in [report["totals"], *per.values(), *report["per_program"].values()]:
        assert bucket["generated"] == bucket["kept"] + sum(bucket["dropped"].values()) + bucket["skipped_by_cap"]
    assert set(report["totals"]["dropped"]) == set(DROP_REASONS)
    assert sum(p["kept"] for p in report["per_program"].values()) == len(rows)
    assert len({r["id"] for r in rows}) == len(rows)
    for i, row in enumerate(rows):
        agent_tasks.validate_task(row, f"row {i}")
        assert set(row) == {"id", "language", "files", "buggy_file", "test_command", "reference_fix", "operator",
                            "source", "split", "failure"}
        assert row["failure"] and row["id"].startswith(f"python-{row['source']}-{row['operator']}-")
    # kept mutants really fail and their reference_fix really passes (re-run a few)
    for row in rows[:: max(1, len(rows) // 3)]:
        buggy = RUNNER(row["files"], row["test_command"], 20)
        fixed = RUNNER({**row["files"], row["buggy_file"]: row["reference_fix"]}, row["test_command"], 20)
        assert buggy.returncode not in (0, None) and fixed.returncode == 0, row["id"]


def test_seed_that_fails_its_tests_is_reported_not_used(user_corpus: Path):
    (user_corpus / "sign.py").write_text(SIGN_BODY.replace("return 1\n", "return 2\n"))
    result = generate("python", load_corpus("python", user_corpus), runner=RUNNER, heldout_fraction=0.0,
                      max_per_program=1)
    assert [f["program"] for f in result.report["seed_failures"]] == ["sign"]
    assert result.report["per_program"]["sign"]["generated"] == 0
    assert {r["source"] for r in result.train} == {"absolute"} and len(result.train) == 1


def test_broken_corpus_errors_name_the_file(tmp_path: Path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "lonely.py").write_text("def f():\n    return 1\n")
    with pytest.raises(CorpusError, match=r"lonely\.py: no test file test_lonely\.py"):
        load_corpus("python", corpus)
    (corpus / "test_lonely.py").write_text("import unittest\n")
    (corpus / "bad.py").write_text("def f(:\n")
    (corpus / "test_bad.py").write_text("import unittest\n")
    with pytest.raises(CorpusError, match=r"bad\.py:1: does not parse"):
        load_corpus("python", corpus)
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus("python", tmp_path / "missing")
    crate = tmp_path / "crate"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text('[package]\nname = "x"\nversion = "0.1.0"\n\n[dependencies]\nrand = "0.8"\n')
    with pytest.raises(CorpusError, match=r"Cargo\.toml: \[dependencies\] must be empty"):
        load_corpus("rust", crate)
    (crate / "Cargo.toml").write_text('[package]\nname = "x"\nversion = "0.1.0"\n')
    (crate / "src" / "m.rs").write_text("pub fn f() {}\n")
    with pytest.raises(CorpusError, match=r"m\.rs: no '#\[cfg\(test\)\]'"):
        load_corpus("rust", crate)


def _script():
    spec = importlib.util.spec_from_file_location("gen16", REPO_ROOT / "scripts" / "16_generate_mutations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_with_user_corpus_and_clear_errors(user_corpus: Path, tmp_path: Path, capsys):
    script = _script()
    out = tmp_path / "out"
    assert script.main(["--language", "python", "--source", str(user_corpus), "--output-dir", str(out),
                        "--max-per-program", "2", "--heldout-fraction", "0.5"]) == 0
    train = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    heldout = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    report = json.loads((out / "mutation_report.json").read_text())
    assert len(train) == 2 and len(heldout) == 2
    assert report["rows"] == {"train": 2, "heldout": 2} and report["provenance"]["git_sha"]
    assert report["source_dir"] == str(user_corpus)
    (user_corpus / "test_sign.py").unlink()
    assert script.main(["--language", "python", "--source", str(user_corpus), "--output-dir", str(out)]) == 2
    assert "sign.py: no test file test_sign.py" in capsys.readouterr().err


def test_missing_toolchain_is_named(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(ToolchainMissing, match="go: go not found on PATH"):
        check_toolchain("go")
    with pytest.raises(ToolchainMissing, match="cargo not found"):
        check_toolchain("rust")
    check_toolchain("python")
    assert _script().main(["--language", "typescript"]) == 2
    assert "node and tsc not found on PATH" in capsys.readouterr().err


def test_bundled_corpus_size_and_layout():
    python = load_corpus("python", default_source("python"))
    rust = load_corpus("rust", default_source("rust"))
    assert len(python) >= 40 and len(rust) >= 20
    lib = (default_source("rust") / "src" / "lib.rs").read_text()
    assert sorted(line.split()[2].rstrip(";") for line in lib.splitlines() if line.startswith("pub mod")) == sorted(
        p.name for p in rust)


@pytest.mark.slow
def test_bundled_corpus_mutates_without_render_mismatches():
    python = load_corpus("python", default_source("python"))
    rust = load_corpus("rust", default_source("rust"))
    for program in python:
        mutants, mismatches = python_mutants(program.files[program.target])
        assert mismatches == [] and len(mutants) >= 5, program.name
    for program in rust:
        assert len(rust_mutants(program.files[program.target])) >= 5, program.name


@pytest.mark.slow
def test_bundled_seeds_pass_their_own_tests():
    for language in ("python", "rust"):
        for program in load_corpus(language, default_source(language)):
            run = RUNNER(program.files, program.test_command, 120)
            assert run.returncode == 0, f"{program.origin}:\n{run.stdout}\n{run.stderr}"


@pytest.mark.slow
def test_rust_tasks_fail_and_their_fix_passes():
    programs = [p for p in load_corpus("rust", default_source("rust")) if p.name == "clamp"]
    result = generate("rust", programs, runner=RUNNER, heldout_fraction=0.0, max_per_program=2)
    assert len(result.train) == 2
    for row in result.train:
        assert row["test_command"] == ["cargo", "test", "--offline", "-q", "--", "--test-threads=1"]
        assert set(row["files"]) == {"Cargo.toml", "src/lib.rs", "src/clamp.rs"}
        assert "panicked" in row["failure"]
        fixed = RUNNER({**row["files"], row["buggy_file"]: row["reference_fix"]}, row["test_command"], 120)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr


@pytest.mark.slow
def test_rust_regeneration_is_byte_stable():
    """The same corpus gives the same task rows: no thread ids, timings or failure order that change per run."""
    programs = [p for p in load_corpus("rust", default_source("rust")) if p.name == "base_convert"]
    runs = [generate("rust", programs, runner=RUNNER, heldout_fraction=0.0, max_per_program=2) for _ in range(2)]
    first, second = ([json.dumps(row, sort_keys=True) for row in result.train] for result in runs)
    assert first == second and len(first) == 2
    failures = [row["failure"] for row in runs[0].train]
    # the case that used to differ: several failing tests, whose blocks came in the order their threads finished
    assert max(f.count("\n---- ") for f in failures) >= 2, failures
    assert all(re.search(r"thread '[^']*' panicked at src/base_convert.rs", f) for f in failures)
    assert not any(re.search(r"thread '[^']*' \(\d+\)|finished in 0\.0[1-9]", f) for f in failures)


def test_normalised_test_output_drops_only_run_to_run_noise():
    from pipeline_lib.agent_tasks import format_test_run, normalise_test_output

    def rust(thread_id: int, seconds: str, right: str) -> str:
        return (f"---- m::tests::t stdout ----\n\nthread 'm::tests::t' ({thread_id}) panicked at src/m.rs:9:5:\n"
                f"assertion `left == right` failed\n  left: 1\n right: {right}\n\ntest result: FAILED. 0 passed; "
                f"1 failed; 0 ignored; 0 measured; 0 filtered out; finished in {seconds}s\n")

    def python(folder: str, seconds: str) -> str:
        return (f'  File "/tmp/pipeline-sandbox-{folder}/work/test_m.py", line 3, in test_t\n'
                f"AssertionError: 1 != 2\n\n---\nRan 4 tests in {seconds}s\n\nFAILED (failures=1)\n")

    assert normalise_test_output(rust(34, "0.01", "2")) == normalise_test_output(rust(36, "0.00", "2"))
    assert "thread 'm::tests::t' panicked at src/m.rs:9:5" in normalise_test_output(rust(34, "0.01", "2"))
    assert normalise_test_output(python("p2ut05fg", "0.001")) == normalise_test_output(python("bpln7afa", "0.013"))
    assert 'File "test_m.py", line 3' in normalise_test_output(python("p2ut05fg", "0.001"))
    # controls: what the test really reported still differs, and so does a path that is not the sandbox's
    assert normalise_test_output(rust(34, "0.01", "2")) != normalise_test_output(rust(34, "0.01", "3"))
    assert normalise_test_output('File "/usr/lib/python3.12/unittest/case.py"') == \
        'File "/usr/lib/python3.12/unittest/case.py"'
    assert format_test_run(["cargo", "test"], 101, rust(34, "0.01", "2"), "") == \
        format_test_run(["cargo", "test"], 101, rust(35, "0.02", "2"), "")


def test_no_sandbox_means_exit_2_not_an_unsandboxed_run(user_corpus: Path, tmp_path: Path, monkeypatch, capsys):
    from pipeline_lib import sandbox

    def refuse(*_args, **_kwargs):
        raise sandbox.SandboxUnavailable("no network namespace (test)")
    monkeypatch.setattr(sandbox, "run_files", refuse)
    assert _script().main(["--language", "python", "--source", str(user_corpus), "--output-dir",
                           str(tmp_path / "o")]) == 2
    assert "sandbox, which is unavailable here: no network namespace (test)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
