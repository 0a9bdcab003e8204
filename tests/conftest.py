"""Shared fixtures: the offline tokenizer and the embedded tiny GPT-OSS, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never touch a hub, never log to wandb, and stay on 2 threads (the CI box has 2 cores).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def gpt_oss_tokenizer():
    from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

    return load_gpt_oss_tokenizer()


@pytest.fixture(scope="session")
def harmony_encoding():
    from pipeline_lib.harmony import harmony_encoding

    return harmony_encoding()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The embedded tiny GPT-OSS (same folder `make demo` uses; rebuilt only if missing or stale)."""
    from pipeline_lib.tiny_model import build_tiny_gpt_oss

    return build_tiny_gpt_oss(REPO_ROOT / "checkpoints" / "tiny-gpt-oss")
