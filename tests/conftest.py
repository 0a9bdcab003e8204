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


REPO_OUTPUTS = ("checkpoints", "data", "logs")  # what `make demo` and a real run write; tests use tmp_path


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for name in REPO_OUTPUTS
            for p in (root / name).rglob("*") if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def repo_outputs_untouched():
    """Fails the session (as an error at teardown) if any test created or changed a file under the repository's
    checkpoints/, data/ or logs/: every test works in its own temporary folders."""
    before = _snapshot(REPO_ROOT)
    yield
    after = _snapshot(REPO_ROOT)
    changed = sorted(set(after.items()) ^ set(before.items()))
    assert not changed, f"tests wrote into the repository: {sorted({path for path, _ in changed})[:20]}"


@pytest.fixture(scope="session", autouse=True)
def tensorboard_in_tmp(tmp_path_factory):
    """Phase scripts run in-process with an output_dir outside <workdir>/checkpoints send TensorBoard to ./logs
    (pipeline_lib.live.logs_dir_for), i.e. the repository: point it at the session's temp folder instead."""
    previous = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(tmp_path_factory.mktemp("tensorboard"))
    yield
    if previous is None:
        os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
    else:
        os.environ["TENSORBOARD_LOGGING_DIR"] = previous


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
def tiny_model_dir(tmp_path_factory) -> Path:
    """The embedded tiny GPT-OSS, built once per session in the session's own temp folder (never the repo's
    checkpoints/, which `make demo` uses). The folder keeps the name tiny-gpt-oss: export folders derive from it."""
    from pipeline_lib.tiny_model import build_tiny_gpt_oss

    return build_tiny_gpt_oss(tmp_path_factory.mktemp("models") / "tiny-gpt-oss")
