"""The phase table (pipeline_lib/phases.py) and the state rules built on it (pipeline_lib/orchestrate.py).

- The table is the only place a phase name or run folder is written: every other string literal in pipeline_lib/
  and scripts/ is scanned (with a planted literal as the negative control).
- configs/*.yaml is the single source of training settings: an edited copy of a config changes the plan.
- Stale state: a phase whose recorded inputs changed is redone with everything downstream, and only those; the old
  output is moved aside, never deleted. Driven through orchestrate.step() over the stand-in phase scripts
  (tests/fakes/fake_phase.py), exactly as run_tui_pipeline.sh drives it, without the bash start-up cost.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from pipeline_lib import phases
from pipeline_lib.gates import folder_bytes
from pipeline_lib.orchestrate import (
    RECORD_FILE,
    RunContext,
    decide,
    decide_all,
    main,
    phase_command,
    plan,
    preflight_problems,
    stale_report,
    step,
    summary,
    write_record,
)

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fakes" / "fake_phase.py"
# String literals that spell a phase name for another reason, with that reason.
ALLOWED = {
    ("pipeline_lib/ipo.py", "ipo"): "TRL's DPOConfig.loss_type value (IPO_LOSS), not the phase name",
    ("pipeline_lib/bench_train_step.py", "ipo"): "a benchmark workload kind (IPO's loss shape), not the phase name",
}
# Files not yet moved onto the table (landed by another helper while this test was written): listed, not hidden.
NOT_YET_ON_THE_TABLE = {"scripts/gpu_smoke.sh"}


# ---------------------------------------------------------------- the table is the only place


def forbidden_words() -> set[str]:
    words = set(phases.NAMES)
    for phase in phases.PHASES:
        folder = phase.folder.replace("{slug}", "")
        words.add(folder if folder.strip("-_") == folder else folder.lstrip("-_"))
    return words


def literal_hits(path: Path, text: str, words: set[str]) -> list[str]:
    """Phase names / run folders written as literals in one file: a Python string constant (not a docstring) equal
    to a phase name or holding a run folder as a path part; a bash line (not a comment) naming either as a word."""
    hits = []
    folders = {w for w in words if w not in phases.NAMES} | {p.folder.replace("{slug}", "") for p in phases.PHASES}
    if path.suffix == ".py":
        tree = ast.parse(text)
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                value = node.value
                parts = set(re.split(r"[/\\]", value))
                if value in phases.NAMES or parts & folders or any(f in value for f in folders if f.startswith("-")):
                    hits.append(f"{path}:{node.lineno}: {value!r}")
    else:  # bash: distinctive names as words; names that are also English/bash words (merge, export) when quoted
        distinctive = {w for w in words if "_" in w or "-" in w}
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            found = [w for w in distinctive if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", code)]
            found += [f for f in folders if f.startswith("-") and f in code]
            found += [w for w in words - distinctive if re.search(rf"""(["'])({re.escape(w)})\1|phase_{w}\b""", code)]
            if found:
                hits.append(f"{path}:{n}: {sorted(set(found))} in {line.strip()!r}")
    return hits


def repo_hits() -> list[str]:
    words = forbidden_words()
    hits = []
    for root in ("pipeline_lib", "scripts"):
        for path in sorted((REPO / root).rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if path.suffix not in (".py", ".sh") or path.name == "phases.py" or rel in NOT_YET_ON_THE_TABLE:
                continue
            for hit in literal_hits(path.relative_to(REPO), path.read_text(), words):
                value = hit.split(": ", 1)[1].strip("'\"")
                if (rel, value) not in ALLOWED:
                    hits.append(hit)
    return hits


def test_phase_names_and_run_folders_are_written_only_in_the_table():
    assert repo_hits() == []


def test_literal_scan_catches_a_planted_phase_name_or_folder():
    """Negative control: the scan is not vacuous."""
    words = forbidden_words()
    planted = {"x.py": 'PHASE = "agent_sft"\n', "y.py": 'OUT = "checkpoints/agent_sft_ipo"\n',
               "z.py": 'def f(slug):\n    return f"{slug}-coding-tui-merged"\n',
               "w.sh": 'for p in data_prep tool_calling_sft; do :; done\n', "v.sh": 'phase_merge() { :; }\n',
               "u.sh": 'run "merge"\n'}
    for name, text in planted.items():
        assert literal_hits(Path(name), text, words), name
    clean = {"a.py": '"""Docstrings may say agent_sft."""\nX = "agent sft run"\n', "b.sh": "# merge in a comment\n",
             "c.sh": "export X=1\n"}
    for name, text in clean.items():
        assert literal_hits(Path(name), text, words) == [], name


def test_table_derivations():
    assert phases.NAMES == ("data_prep", "tool_calling_sft", "merge", "agent_sft", "ipo", "grpo", "export")
    assert [p.name for p in phases.ADAPTER_PRIORITY] == ["grpo", "ipo", "agent_sft", "tool_calling_sft"]
    assert phases.downstream("agent_sft") == ["ipo", "grpo", "export"]
    assert phases.downstream("data_prep") == ["tool_calling_sft", "merge", "agent_sft", "ipo", "grpo", "export"]
    from pipeline_lib.gates import GATE_KEYS
    from pipeline_lib.gguf_export import ADAPTER_PRIORITY
    from pipeline_lib.profiles import PHASES as PROFILE_PHASES

    assert GATE_KEYS["tool_calling_sft"] == "tool_calling" and "data_prep" not in GATE_KEYS
    assert ADAPTER_PRIORITY[0] == ("grpo", "agent_sft_grpo")
    assert PROFILE_PHASES == tuple(p.name for p in phases.TRAINED)
    for phase in phases.PHASES:  # every script and config the table names exists (GRPO's come with its helper)
        if phase is not phases.GRPO:
            assert (REPO / "scripts" / phase.script).is_file() and (REPO / "configs" / phase.config).is_file()


# ---------------------------------------------------------------- fixtures: a fake pipeline driven by step()


@pytest.fixture
def fake_ctx(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for phase in phases.PHASES:
        if phase is not phases.GRPO:
            shutil.copy(FAKE, scripts / phase.script)
    model = tmp_path / "model"
    from pipeline_lib.tiny_model import tiny_gpt_oss_config

    tiny_gpt_oss_config().save_pretrained(model)  # the plan builds a meta model from it: keep it tiny
    save_file({"w": np.zeros(4, dtype=np.float32)}, str(model / "model.safetensors"))
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "glaiveai__glaive-function-calling-v2.jsonl").write_text('{"system": "", "chat": "hi"}\n')
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    return RunContext(workdir=tmp_path / "work", model=str(model), tiny=True, scripts_dir=scripts,
                      configs_dir=configs, python=sys.executable, local_data=samples)


def drive(ctx: RunContext) -> dict[str, str]:
    """One pipeline run the way run_tui_pipeline.sh does it (no gates): {phase: action}."""
    actions = {}
    for name in phases.NAMES:
        values = step(name, ctx)
        actions[name] = values["ACTION"]
        if values["ACTION"] in ("fresh", "resume", "redo"):
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            subprocess.run(values["CMD"], cwd=ctx.workdir, check=True, capture_output=True)
            write_record(phases.get(name), ctx)
    return actions


def stale(ctx: RunContext) -> list[str]:
    return [p.name for p in ctx.paths.stale_folders()]


ALL_RUN = {"data_prep": "fresh", "tool_calling_sft": "fresh", "merge": "fresh", "agent_sft": "fresh", "ipo": "fresh",
           "grpo": "absent", "export": "fresh"}
ALL_SKIP = {**{n: "skip" for n in phases.NAMES}, "grpo": "absent"}


def test_rerun_with_nothing_changed_redoes_nothing(fake_ctx):
    """Negative control for the stale cases below: the same inputs skip everything and move nothing aside."""
    assert drive(fake_ctx) == ALL_RUN
    assert drive(fake_ctx) == ALL_SKIP
    assert stale(fake_ctx) == []
    record = json.loads((fake_ctx.paths.run_dir("agent_sft") / "final" / RECORD_FILE).read_text())
    assert set(record["inputs"]["upstream"]) == {"merge", "data_prep"} and record["inputs"]["batch"]["seq"] == 256


def test_changed_source_data_redoes_data_prep_and_everything_downstream(fake_ctx):
    drive(fake_ctx)
    old_report = (fake_ctx.paths.data / "prep_report.json").read_text()
    (fake_ctx.local_data / "glaiveai__glaive-function-calling-v2.jsonl").write_text('{"system": "", "chat": "x"}\n')
    decision = decide("data_prep", fake_ctx)
    assert decision.action == "redo" and "source data changed (glaiveai__glaive-function-calling-v2.jsonl)" in \
        decision.reason
    assert drive(fake_ctx) == {**ALL_RUN, **{n: "redo" for n in ALL_RUN if ALL_RUN[n] == "fresh"}}
    moved = stale(fake_ctx)
    assert len(moved) == 6 and any(m.startswith("coding_tui.stale-") for m in moved)
    kept = fake_ctx.paths.data.with_name(next(m for m in moved if m.startswith("coding_tui.stale-")))
    assert (kept / "prep_report.json").read_text() == old_report  # kept aside, not deleted
    assert drive(fake_ctx) == ALL_SKIP


def test_retrained_upstream_phase_redoes_only_what_consumes_it(fake_ctx):
    drive(fake_ctx)
    shutil.rmtree(fake_ctx.paths.run_dir("agent_sft"))  # agent SFT retrained from scratch
    actions = drive(fake_ctx)
    assert actions == {**ALL_SKIP, "agent_sft": "fresh", "ipo": "redo", "export": "redo"}
    assert sorted(n.split(".stale-")[0] for n in stale(fake_ctx)) == ["agent_sft_ipo", "model-coding-tui-export"]
    lines = [json.loads(x) for x in (fake_ctx.paths.logs / ".run_decisions.jsonl").read_text().splitlines()]
    ipo = [x for x in lines if x["phase"] == "ipo"][-1]
    assert ipo["reason"] == "upstream agent_sft changed" and ".stale-" in ipo["moved_to"]
    rows: dict[str, str] = {}
    for line in summary(fake_ctx).splitlines():  # the first table (status / why), not the cost table after it
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].lstrip("| "), line)
    assert "| redo: upstream agent_sft changed |" in rows["ipo"]  # the summary says why, as the log does
    assert "| skip: " in rows["merge"]  # control: an untouched phase says skip


def test_changed_batch_values_or_base_model_redo_what_reads_them(fake_ctx):
    """The resolved run settings are inputs too: a batch profile value (configs/batch_profiles.yaml) redoes the
    phase it belongs to and what consumes it; a rewritten base model redoes every phase built on it, data prep
    excepted. Control: the profile edited back redoes nothing."""
    drive(fake_ctx)
    profiles = fake_ctx.configs_dir / "batch_profiles.yaml"
    text = profiles.read_text()
    ipo_row = "ipo:              {batch: 1, accum: 1, seq: 256, max_steps: 10}"
    assert text.count(ipo_row) == 1
    profiles.write_text(text.replace(ipo_row, ipo_row.replace("max_steps: 10", "max_steps: 12")))
    decisions = {d.phase: d for d in decide_all(fake_ctx)}
    assert [n for n, d in decisions.items() if d.action == "redo"] == ["ipo", "export"]
    assert "batch settings changed" in decisions["ipo"].reason and "max_steps" in decisions["ipo"].reason
    profiles.write_text(text)
    assert {d.action for d in decide_all(fake_ctx)} == {"skip", "absent"}
    weights = Path(fake_ctx.model) / "model.safetensors"
    save_file({"w": np.ones(8, dtype=np.float32)}, str(weights))
    decisions = {d.phase: d for d in decide_all(fake_ctx)}
    assert [n for n, d in decisions.items() if d.action == "redo"] == ["tool_calling_sft", "merge", "agent_sft", "ipo",
                                                                        "export"]
    assert decisions["tool_calling_sft"].reason == "base model changed" and decisions["data_prep"].action == "skip"


def test_stale_folders_are_counted_by_the_disk_preflight_and_deleted_only_by_prune_stale(fake_ctx, capsys):
    drive(fake_ctx)
    assert stale_report(fake_ctx.paths) == (0, "")  # control: nothing redone, nothing set aside
    shutil.rmtree(fake_ctx.paths.run_dir("agent_sft"))
    drive(fake_ctx)
    moved = fake_ctx.paths.stale_folders()
    held, note = stale_report(fake_ctx.paths)
    assert len(moved) == 2 and held == sum(folder_bytes(p) for p in moved) > 0
    assert f"{len(moved)} stale folder(s)" in note and "--prune-stale deletes them" in note
    ctx_flags = ["--workdir", str(fake_ctx.workdir), "--model", fake_ctx.model, "--tiny", "--configs-dir",
                 str(fake_ctx.configs_dir), "--scripts-dir", str(fake_ctx.scripts_dir)]
    assert main(["disk", "--stage", "merge", *ctx_flags]) == 0
    assert capsys.readouterr().out.strip().endswith(note.strip())  # the disk line says what they hold
    assert drive(fake_ctx) == ALL_SKIP and fake_ctx.paths.stale_folders() == moved  # a run never deletes them
    assert main(["prune-stale", *ctx_flags]) == 0
    assert capsys.readouterr().out.count("deleted stale folder") == 2
    assert fake_ctx.paths.stale_folders() == [] and not any(p.exists() for p in moved)
    assert drive(fake_ctx) == ALL_SKIP  # the live outputs were left alone


def test_dry_run_shows_skip_resume_redo_and_fresh(fake_ctx):
    assert re.search(r"data_prep +FRESH +no prep_report.json yet", plan(fake_ctx))
    drive(fake_ctx)
    agent = fake_ctx.paths.run_dir("agent_sft")
    shutil.rmtree(agent / "final")  # killed after its last checkpoint
    shutil.rmtree(fake_ctx.paths.run_dir("export"))
    text = plan(fake_ctx)
    assert re.search(r"tool_calling_sft +SKIP ", text) and re.search(r"merge +SKIP ", text)
    last = max(agent.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])).name
    assert re.search(rf"agent_sft +RESUME +resuming from {last}\n", text)
    assert re.search(r"ipo +REDO +upstream agent_sft changed", text)
    assert re.search(r"export +FRESH +no export manifest.json", text)
    assert not fake_ctx.paths.stale_folders() and (agent / last).is_dir()  # a plan moves nothing


def test_edited_config_takes_effect_and_redoes_downstream(fake_ctx):
    """configs/*.yaml is the single source: the pipeline passes --config and no training flag, so an edit reaches
    the phase (the fake records the lora_r it read) and redoes the phase and what consumes it."""
    drive(fake_ctx)
    cmd = phase_command(phases.TOOL_CALLING, fake_ctx)
    assert cmd[cmd.index("--config") + 1] == str(fake_ctx.configs_dir / "tool_calling_sft.yaml")
    for flag in ("--lora_r", "--num_train_epochs", "--logging_steps", "--eval_strategy", "--beta"):
        assert all(flag not in phase_command(p, fake_ctx) for p in phases.PHASES if p is not phases.GRPO), flag
    path = fake_ctx.configs_dir / "tool_calling_sft.yaml"
    path.write_text(path.read_text().replace("lora_r: 64", "lora_r: 8"))
    assert drive(fake_ctx) == {**ALL_SKIP, "tool_calling_sft": "redo", "merge": "redo", "agent_sft": "redo",
                               "ipo": "redo", "export": "redo"}
    calls = [json.loads(x) for x in (fake_ctx.workdir / "fake_calls.jsonl").read_text().splitlines()]
    tool_calls = [c["lora_r"] for c in calls if c["script"] == phases.TOOL_CALLING.script]
    assert tool_calls == [64, 8]


def test_comment_only_config_edit_redoes_nothing(fake_ctx):
    """A config is an input by its parsed values: a comment and blank lines added change nothing; a changed value
    (the control) redoes that phase and what consumes it."""
    drive(fake_ctx)
    before = [(d.phase, d.action) for d in decide_all(fake_ctx)]
    assert {a for _, a in before} == {"skip", "absent"}  # absent: GRPO without a task file
    path = fake_ctx.configs_dir / "tool_calling_sft.yaml"
    text = path.read_text()
    path.write_text("# a note the reader wanted\n\n" + text.replace("lora_r: 64", "lora_r: 64   # the rank\n"))
    assert path.read_text() != text
    assert [(d.phase, d.action) for d in decide_all(fake_ctx)] == before
    path.write_text(text.replace("lora_r: 64", "lora_r: 32"))
    decisions = {d.phase: d for d in decide_all(fake_ctx)}
    assert decisions["tool_calling_sft"].action == "redo" and "tool_calling_sft.yaml changed" in \
        decisions["tool_calling_sft"].reason
    assert decisions["data_prep"].action == "skip" and decisions["export"].action == "redo"


def test_quick_test_and_production_keep_separate_state(fake_ctx):
    quick = RunContext(**{**fake_ctx.__dict__, "quick_test": True})
    drive(quick)
    assert quick.paths.base == fake_ctx.workdir / "quick-test" and quick.paths.data.is_dir()
    assert drive(fake_ctx) == ALL_RUN  # production builds its own, the quick test's state untouched
    assert drive(quick) == ALL_SKIP
    # Quick-test output copied where production looks (an older layout): refused as stale, with the reason.
    shutil.rmtree(fake_ctx.paths.run_dir("tool_calling_sft"))
    shutil.copytree(quick.paths.run_dir("tool_calling_sft"), fake_ctx.paths.run_dir("tool_calling_sft"))
    decision = decide("tool_calling_sft", fake_ctx)
    assert decision.action == "redo" and "built by a quick test run" in decision.reason


def test_dry_run_shows_redo_with_reason_and_lora_from_the_yaml(fake_ctx):
    drive(fake_ctx)
    path = fake_ctx.configs_dir / "agent_sft.yaml"
    before = plan(fake_ctx)
    path.write_text(path.read_text().replace("lora_r: 128", "lora_r: 4"))
    after = plan(fake_ctx)
    trainable = [re.findall(r"agent_sft .*\n.*LoRA r(\d+), trainable ([\d,]+)", text)[0] for text in (before, after)]
    assert trainable[0][0] == "128" and trainable[1][0] == "4" and trainable[0][1] != trainable[1][1]
    assert re.search(r"agent_sft +REDO .*agent_sft.yaml changed", after)
    assert re.search(r"ipo +REDO +upstream agent_sft is redone first", after)
    assert re.search(r"tool_calling_sft +SKIP", after) and not fake_ctx.paths.stale_folders()  # a plan moves nothing
    assert [d.action for d in decide_all(fake_ctx)] == ["skip", "skip", "skip", "redo", "redo", "absent", "redo"]


def test_preflight_names_every_bad_input(fake_ctx, tmp_path):
    gates = fake_ctx.configs_dir / "gates.yaml"
    assert preflight_problems(fake_ctx, gates) == []
    no_config = tmp_path / "model_without_config"
    no_config.mkdir()
    bad = RunContext(**{**fake_ctx.__dict__, "tiny": False, "model": str(no_config)})
    assert any("has no config.json" in p for p in preflight_problems(bad, gates))
    typo = preflight_problems(fake_ctx, tmp_path / "gatse.yaml")
    assert typo and "--gates-config" in typo[0]
    not_yaml = tmp_path / "gates_not_yaml.yaml"  # a YAML syntax error is reported, not raised
    not_yaml.write_text("tiny:\n  tool_calling: {threshold: [unclosed\n")
    assert any(p.startswith(f"--gates-config {not_yaml}: ParserError") for p in preflight_problems(fake_ctx, not_yaml))
    wrong_shape = tmp_path / "gates_list.yaml"
    wrong_shape.write_text("tiny: [1, 2]\n")
    assert any("--gates-config" in p for p in preflight_problems(fake_ctx, wrong_shape))
    broken = fake_ctx.configs_dir / "merge.yaml"
    broken.write_text("a: [unclosed\n")
    assert any("merge config" in p for p in preflight_problems(fake_ctx, gates))


def test_truncated_export_is_redone_not_skipped(fake_ctx):
    drive(fake_ctx)
    shard = fake_ctx.paths.run_dir("export") / "hf" / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-8])
    decision = decide("export", fake_ctx)
    assert decision.action == "fresh" and "truncated" in decision.reason


def test_yaml_holds_no_paths_the_table_owns():
    """Run folders and data paths come from the table; a YAML that repeated them would drift again."""
    for name in ("tool_calling_sft.yaml", "agent_sft.yaml", "ipo.yaml", "data_prep.yaml"):
        data = yaml.safe_load((REPO / "configs" / name).read_text())
        assert not {"output_dir", "train_data_path", "base_model", "checkpoint"} & set(data), name


def test_orchestrator_and_phase_scripts_resume_from_the_same_checkpoint(tmp_path):
    """One resume rule (pipeline_lib/checkpoints.py): the orchestrator's plan and a phase script's
    --resume_from_checkpoint auto pass over the same broken checkpoints (the script used to look only for
    trainer_state.json, so it resumed from a checkpoint whose optimizer file was cut short)."""
    import torch

    from pipeline_lib.checkpoints import resolve_resume_checkpoint
    from pipeline_lib.orchestrate import training_state

    run = tmp_path / "run"
    for step_n in (10, 20):
        ckpt = run / f"checkpoint-{step_n}"
        ckpt.mkdir(parents=True)
        save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(ckpt / "adapter_model.safetensors"))
        torch.save({"state": {}}, ckpt / "optimizer.pt")
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step_n, "log_history": []}))
    newest = run / "checkpoint-20"
    # Control: both pick the newest when it is whole.
    assert training_state(run).resume_from == newest and resolve_resume_checkpoint("auto", run) == str(newest)
    optimizer = newest / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:-64])  # disk full while saving
    assert training_state(run).resume_from == run / "checkpoint-10"
    assert resolve_resume_checkpoint("auto", run) == str(run / "checkpoint-10")
