"""Live metrics: TensorBoard events with tokens/s from a real Trainer, progress lines and their ETA arithmetic."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import torch
from torch import nn

from pipeline_lib import live


class TinyLM(nn.Module):
    """Just enough of a causal LM for transformers.Trainer: embeddings -> logits, cross-entropy on labels."""

    def __init__(self, vocab: int = 32) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.out = nn.Linear(16, vocab)

    def forward(self, input_ids, labels=None, attention_mask=None):
        logits = self.out(self.emb(input_ids))
        loss = nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))
        return {"loss": loss, "logits": logits}


def run_trainer(tmp_path, monkeypatch, report_to: str, steps: int = 6):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 32, (24, 16), generator=gen).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    out = tmp_path / "work" / "checkpoints" / "run"
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=2, logging_steps=1,
                             report_to=report_to, save_strategy="no", use_cpu=True,
                             include_num_input_tokens_seen="all", learning_rate=1e-2)
    folder = live.configure_reporting("demo_phase", report_to, out)
    trainer = Trainer(model=TinyLM(), args=args, train_dataset=data)
    lines: list[str] = []
    callback = live.LiveMetricsCallback("demo_phase", interval=0.0, estimate=None, printer=lines.append)
    trainer.callback_handler.callbacks.insert(0, callback)
    trainer.train()
    return folder, trainer, lines


def read_scalars(folder) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_gets_loss_lr_and_tokens_per_second(tmp_path, monkeypatch):
    folder, trainer, lines = run_trainer(tmp_path, monkeypatch, "tensorboard")
    assert folder == tmp_path / "work" / "logs" / "tensorboard" / "demo_phase"  # <workdir>/logs, not the cwd
    scalars = read_scalars(folder)
    assert len(scalars["train/loss"]) == 6 and all(v > 0 for v in scalars["train/loss"])
    assert "train/learning_rate" in scalars and "train/grad_norm" in scalars
    # 2 rows x 16 tokens per step: the rate is positive and the step count matches
    assert len(scalars["train/tokens_per_second"]) == 6 and min(scalars["train/tokens_per_second"]) > 0
    assert lines and lines[-1].startswith("[progress] phase demo_phase | step 6/6 (100%)")


def test_no_event_files_without_tensorboard(tmp_path, monkeypatch):
    """Negative control: report_to none writes no TensorBoard folder (so the test above is not vacuous)."""
    folder, _, _ = run_trainer(tmp_path, monkeypatch, "none", steps=2)
    assert folder is None
    assert not (tmp_path / "work" / "logs" / "tensorboard").exists()


ESTIMATE = {"order": ["data_prep", "sft_a", "merge", "sft_b", "pref", "rl", "export"],
            "phases": {"sft_a": {"seconds": 3600.0}, "merge": {"seconds": 120.0}, "sft_b": {"seconds": 7200.0},
                       "pref": {"seconds": None}, "rl": {"seconds": None, "action": "skip"},
                       "export": {"seconds": None}}}


def test_progress_line_eta_adds_later_phases_and_names_unmeasured():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    line = live.progress_line("sft_a", step=100, max_steps=500, tokens_per_second=4410.4, elapsed=723,
                              step_seconds=2.0, estimate=ESTIMATE, now=now)
    # phase left = 400 x 2 s = 800 s; later: merge 120 + sft_b 7200 (rl skipped; pref, export unmeasured)
    assert line == ("[progress] phase 2/7 sft_a | step 100/500 (20%) | 4,410 tok/s | elapsed 12m03s | "
                    "phase ETA 13m20s | run ETA 2h15m (~2026-11-28 14:15 UTC) + unmeasured pref, export")


def test_progress_line_without_estimate_or_timing():
    assert live.progress_line("x", 0, 10, None, 5, None, None) == (
        "[progress] phase x | step 0/10 (0%) | tok/s n/a | elapsed 0m05s | phase ETA n/a (no step timed yet)")


def test_read_run_estimate_from_env(tmp_path, monkeypatch):
    path = tmp_path / "est.json"
    path.write_text(json.dumps(ESTIMATE))
    monkeypatch.setenv(live.RUN_ESTIMATE_ENV, str(path))
    assert live.read_run_estimate() == ESTIMATE
    path.write_text("{not json")
    assert live.read_run_estimate() is None


@pytest.mark.parametrize("report_to,expected", [("tensorboard", True), (["tensorboard", "wandb"], True),
                                                ("wandb", False), ("none", False), (None, False)])
def test_configure_reporting_only_for_tensorboard(tmp_path, monkeypatch, report_to, expected):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = live.configure_reporting("p", report_to, tmp_path / "checkpoints" / "run")
    assert (out is not None) == expected


def test_tokens_per_second_from_trl_num_tokens_when_the_trainer_counts_none():
    """DPO (IPO) and GRPO leave num_input_tokens_seen at 0 and log TRL's cumulative num_tokens instead."""
    from types import SimpleNamespace

    callback = live.LiveMetricsCallback("p", interval=1e9, estimate=None, printer=lambda line: None)
    state = SimpleNamespace(num_input_tokens_seen=0, global_step=0, max_steps=2)
    callback.on_train_begin(None, state, None)
    callback._last_log = (callback._last_log[0] - 2.0, 0)  # two seconds before the first record
    first = {"loss": 1.0, "num_tokens": 1000.0}
    callback.on_log(None, state, None, logs=first)
    assert 400 < first["tokens_per_second"] <= 500
    none = {"loss": 1.0}  # control: nothing counted, nothing invented
    callback.on_log(None, state, None, logs=none)
    assert "tokens_per_second" not in none
