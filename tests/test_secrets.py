"""Secrets never reach a written file: --hub_token in provenance commands and saved training arguments."""

from __future__ import annotations

import os

import pytest

from pipeline_lib import provenance

CANARY = "hf_canarySECRET0123456789abcdef"


def test_redact_argv_hides_every_spelling_of_a_secret_flag(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    argv = ["13.py", "--hub_token", CANARY, "--hub-token=" + CANARY, "--lr", "1e-4", "--token", CANARY, "x"]
    redacted = provenance.redact_argv(argv)
    assert CANARY not in " ".join(redacted)
    assert redacted == ["13.py", "--hub_token", "<redacted>", "--hub-token=<redacted>", "--lr", "1e-4", "--token",
                        "<redacted>", "x"]
    assert provenance.redact_argv(["a", "--lr", "1"]) == ["a", "--lr", "1"]  # control: nothing else changes
    monkeypatch.setenv("HF_TOKEN", CANARY)  # a token value anywhere else in the command is masked too
    assert provenance.redact_argv(["a", f"--url=https://x/?t={CANARY}"]) == ["a", "--url=https://x/?t=<redacted>"]


def test_provenance_command_is_redacted(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("sys.argv", ["/repo/scripts/17_ipo_preference.py", "--hub_token", CANARY])
    info = provenance.provenance({"hub_token": CANARY})
    assert CANARY not in str(info)
    assert info["command"] == ["17_ipo_preference.py", "--hub_token", "<redacted>"]


def test_hub_token_is_detached_from_training_arguments(tmp_path, monkeypatch):
    """Trainer saves training_args.bin with torch.save(args): the token must be gone from args by then."""
    import torch

    from pipeline_lib.sft_config import ToolCallingScriptArguments, ToolCallingSFTConfig, parse_phase_args

    monkeypatch.delenv("HF_TOKEN", raising=False)
    argv = ["--output_dir", str(tmp_path), "--hub_token", CANARY]
    control = ToolCallingSFTConfig(output_dir=str(tmp_path), hub_token=CANARY, report_to="none")
    torch.save(control, tmp_path / "control.bin")
    assert CANARY.encode() in (tmp_path / "control.bin").read_bytes()  # control: saved args do carry it
    _, args = parse_phase_args(ToolCallingScriptArguments, ToolCallingSFTConfig, "configs/tool_calling_sft.yaml",
                               argv)
    torch.save(args, tmp_path / "training_args.bin")
    assert CANARY.encode() not in (tmp_path / "training_args.bin").read_bytes()
    assert args.hub_token is None
    assert os.environ["HF_TOKEN"] == CANARY  # still usable by huggingface_hub in this process


@pytest.mark.parametrize("value", [None, ""])
def test_detach_hub_token_without_a_token_changes_nothing(value, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)

    class Args:
        hub_token = value

    assert provenance.detach_hub_token(Args()).hub_token == value
    assert "HF_TOKEN" not in os.environ
