"""The --dry-run cost estimate: data volumes, steps and tokens per phase, time from measured throughput only."""

from __future__ import annotations

import json
import re

import pytest

from pipeline_lib import estimate as est
from pipeline_lib.progress import fmt_duration


def table(tok_s: float = 1000.0) -> est.ThroughputTable:
    return est.ThroughputTable(
        training=(est.Measurement("H100-80GB", "sft", "unsloth", tok_s, 4096, "2026-11-25", "bench"),
                  est.Measurement("H100-80GB", "sft", "hf", tok_s / 2, 4096, "2026-11-25", "bench")),
        merge=(est.MergeMeasurement("H100-80GB", 60, 10_000_000_000, "2026-11-25", "bench"),))


def plan(**kw) -> est.TrainingPlan:
    base = dict(phase="sft", volume=est.DataVolume(1000, 500.0, "t"), batch=2, accum=4, seq=4096, max_steps=-1,
                epochs=1, backend="unsloth")
    return est.TrainingPlan(**{**base, **kw})


def test_epochs_give_steps_tokens_and_time():
    e = est.estimate_training(plan(epochs=2), table(), "H100-80GB")
    # 1000 rows x 500 tokens x 2 epochs = 1,000,000 tokens; 8 rows (4,000 tokens) a step -> 250 steps
    assert (e.steps, e.tokens, e.seconds) == (250, 1_000_000, 1000.0)
    assert e.gpu_hours == pytest.approx(1000 / 3600)
    assert "1,000 tok/s unsloth on H100-80GB" in e.basis


def test_max_steps_wins_and_rows_are_truncated_to_seq():
    e = est.estimate_training(plan(max_steps=50, seq=256), table(), "H100-80GB")
    assert (e.steps, e.tokens) == (50, 50 * 8 * 256)  # mean 500 > seq 256: truncated rows


def test_packed_and_preference_pairs():
    packed = est.estimate_training(plan(packed=True, seq=32768, batch=1, accum=2), table(), "H100-80GB")
    per_step = 2 * 32768 * est.PACKED_FILL
    assert packed.steps == -(-500_000 // per_step) and packed.tokens == int(packed.steps * per_step)
    pairs = est.estimate_training(plan(pairs=True), table(), "H100-80GB")
    assert pairs.tokens == 2 * 1000 * 500  # chosen and rejected both forwarded


def test_backend_auto_prefers_unsloth_then_hf_and_unknown_card_says_no_measurement():
    assert est.estimate_training(plan(backend="auto"), table(), "H100-80GB").seconds == 500.0
    assert est.estimate_training(plan(backend="hf"), table(), "H100-80GB").seconds == 1000.0
    none = est.estimate_training(plan(), table(), "H200")
    assert none.seconds is None and none.tokens == 500_000 and "no measurement for sft on H200" in none.basis


def test_no_volume_means_tokens_unknown():
    e = est.estimate_training(plan(volume=None), table(), "H100-80GB")
    assert e.tokens is None and e.seconds is None and "no data volume" in e.basis


def test_merge_scales_with_parameters():
    assert est.estimate_merge("merge", 20_000_000_000, table(), "H100-80GB").seconds == 120.0
    assert est.estimate_merge("merge", 20_000_000_000, table(), "cpu-2core").seconds is None


def test_prepared_volumes_from_report(tmp_path):
    report = {"datasets": {"a": {"category": "tool_calling", "kept": 10, "tokens": {"mean": 100.0}},
                           "b": {"category": "tool_calling", "kept": 30, "tokens": {"mean": 300.0}},
                           "c": {"category": "preference", "kept": 0, "tokens": None}}}
    (tmp_path / "prep_report.json").write_text(json.dumps(report))
    vols = est.prepared_volumes(tmp_path)
    assert set(vols) == {"tool_calling"}
    assert vols["tool_calling"].rows == 40 and vols["tool_calling"].mean_tokens == 250.0
    (tmp_path / "prep_report.json").write_text(json.dumps(report | {"error": "every dataset failed"}))
    assert est.prepared_volumes(tmp_path) == {}  # a failed prep measures nothing


def test_configured_volumes_leave_out_categories_with_unknown_sizes(tmp_path):
    vols = est.configured_volumes(quick_test=True)
    # quick test: glaive 500 + xlam 200 + hermes 300 rows; agent_traj has datasets without tokens_per_row
    assert vols["tool_calling"].rows == 1000 and "agent_traj" not in vols
    full = est.configured_volumes(quick_test=False)
    assert full["tool_calling"].rows == 113000 + 60000 + 11600


def test_shipped_throughput_table_loads_and_rejects_bad_rows(tmp_path):
    shipped = est.load_throughput()
    assert shipped.lookup("H100-80GB", "tool_calling_sft", "unsloth").tokens_per_second == 8694.5
    assert shipped.lookup("H100-80GB", "tool_calling_sft", "auto") is None  # 'auto' is planned first
    bad = tmp_path / "t.yaml"
    bad.write_text("training:\n  - {card: X, phase: p, backend: hf, tokens_per_second: 0, seq: 1, date: d,"
                   " source: s}\n")
    with pytest.raises(ValueError, match="tokens_per_second must be > 0"):
        est.load_throughput(bad)
    bad.write_text("training:\n  - {card: X, phase: p}\n")
    with pytest.raises(ValueError, match="missing backend"):
        est.load_throughput(bad)


def test_format_totals_known_phases_and_names_the_rest():
    estimates = [est.estimate_training(plan(epochs=2), table(), "H100-80GB"),
                 est.estimate_training(plan(phase="other"), table(), "H100-80GB")]
    lines = est.format_estimates(estimates, "H100-80GB", "assumed", "balanced", unmeasured=["export"])
    assert lines[-1] == ("total: ~16m40s (0.28 GPU-hours) on H100-80GB with the balanced profile"
                         " + no measurement for other, export")


@pytest.mark.parametrize("profile", ["aggressive", "balanced", "conservative"])
def test_dry_run_plan_on_config_only_20b_prints_estimate(tmp_path, repo_root, profile):
    """--dry-run on the 20B config (no weights) with prepared data: per-phase tokens, steps, time and a total."""
    import shutil

    from pipeline_lib.orchestrate import PipelinePaths, RunContext, model_slug, plan

    model = tmp_path / "gpt-oss-20b"
    shutil.copytree(repo_root / "configs" / "gpt-oss-20b", model)
    data = PipelinePaths(tmp_path / "work", model_slug(str(model))).data
    data.mkdir(parents=True)
    report = {"datasets": {"glaive": {"category": "tool_calling", "kept": 50000, "tokens": {"mean": 400.0}},
                           "code_act": {"category": "agent_traj", "kept": 20000, "tokens": {"mean": 3000.0}},
                           "hh_rlhf": {"category": "preference", "kept": 10000, "tokens": {"mean": 300.0}}}}
    (data / "prep_report.json").write_text(json.dumps(report))
    text = plan(RunContext(tmp_path / "work", str(model), profile=profile), card="H100-80GB")
    lines = text.splitlines()
    tool = next(line for line in lines if line.strip().startswith("tool_calling_sft") and "tokens" in line)
    # 50,000 rows x 400 tokens, one epoch, rows per step from the profile; 8,694.5 tok/s (the unsloth row)
    from pipeline_lib.profiles import resolve

    rows = resolve(profile, "tool_calling_sft").effective_batch
    steps = -(-50000 // rows)
    assert f"{steps * rows * 400:,} tokens" in tool and f"{steps:,} steps" in tool
    assert fmt_duration(steps * rows * 400 / 8694.5) in tool
    agent = next(line for line in lines if line.strip().startswith("agent_sft") and "tokens" in line)
    assert "tokens" in agent and re.search(r"\d+h\d\dm|\d+m\d\ds", agent)  # 20K x 3K tokens x 3 epochs: hours
    assert lines[-1].startswith("total: ~") and f"with the {profile} profile" in lines[-1]
    assert "no measurement for data_prep, ipo, export" in lines[-1]  # unmeasured phases are named, not guessed


def test_more_gpus_keep_the_global_batch_and_divide_the_time(tmp_path, repo_root):
    """--gpus 2 launches each phase with half the accumulation (orchestrate.phase_command), so at fixed max_steps
    (quick test: 50) the tokens stay those of 1 GPU and the time halves. Control: an odd accumulation rounds up per
    GPU, so 2 GPUs train more tokens per step (the global batch grows, as the launched command does)."""
    from pipeline_lib import phases

    config = repo_root / "configs" / phases.TOOL_CALLING.config
    spec = est.PhaseSpec(phases.TOOL_CALLING.name, phases.KIND_TRAIN, phases.TOOL_CALLING.dataset, config)
    card = "H100-80GB"
    one, two = (est.estimate_run([spec], data_dir=tmp_path, profile="balanced", quick_test=True, parameters=None,
                                 card=card, gpus=n)[0] for n in (1, 2))
    assert one.steps == two.steps == 50 and one.tokens == two.tokens and one.seconds is not None
    assert two.seconds == pytest.approx(one.seconds / 2)
    tiny = [est.estimate_run([spec], data_dir=tmp_path, profile="tiny", quick_test=False, parameters=None,
                             card=card, gpus=n)[0] for n in (1, 2)]  # tiny: batch 2 x accum 1 -> 1 per GPU
    assert tiny[1].tokens == 2 * tiny[0].tokens


def test_auto_is_planned_as_the_phases_resolve_it(tmp_path, repo_root):
    """The estimate plans 'auto' with the phases' own rule (unsloth_utils.auto_backend): packed agent SFT on the fast
    path on a GPU card (its H200 row, packed rows), Phase 1 on Unsloth unless the model is the released MXFP4 one,
    stock hf on the CPU card. Control: on a card without a fast row (H100) it falls back to Unsloth's row and then
    plans unpacked rows, as that backend trains."""
    from pipeline_lib import phases

    assert est.planned_backend("auto", "H200", packing=True, mxfp4=False) == "fast"
    assert est.planned_backend("auto", "H200", packing=False, mxfp4=False) == "unsloth"
    assert est.planned_backend("auto", "H200", packing=False, mxfp4=True) == "fast"
    assert est.planned_backend("auto", est.CPU_CARD, packing=True, mxfp4=True) == "hf"
    assert est.planned_backend("hf", "H200", packing=True, mxfp4=True) == "hf"

    report = {"datasets": {name: {"category": phase.dataset, "kept": 1000, "tokens": {"mean": 3000.0}}
                           for name, phase in (("a", phases.AGENT_SFT), ("t", phases.TOOL_CALLING))}}
    (tmp_path / "prep_report.json").write_text(json.dumps(report))

    def run(phase, card, **kw):
        spec = est.PhaseSpec(phase.name, phases.KIND_TRAIN, phase.dataset, repo_root / "configs" / phase.config, **kw)
        return est.estimate_run([spec], data_dir=tmp_path, profile="balanced", quick_test=True, parameters=None,
                                card=card)[0]

    agent = run(phases.AGENT_SFT, "H200")
    assert "11,845 tok/s fast on H200" in agent.basis
    fallback = run(phases.AGENT_SFT, "H100-80GB")
    assert "unsloth on H100-80GB" in fallback.basis
    assert agent.tokens > fallback.tokens  # packed 32K rows vs one conversation a row, same steps
    assert "11,327 tok/s unsloth on H200" in run(phases.TOOL_CALLING, "H200").basis
    assert "8,940 tok/s fast on H200" in run(phases.TOOL_CALLING, "H200", mxfp4=True).basis
