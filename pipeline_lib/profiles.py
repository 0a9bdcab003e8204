"""Batch profiles (writeup §6) read from configs/batch_profiles.yaml.

    python -m pipeline_lib.profiles balanced agent_sft [--quick-test] [--format shell|json]

prints the resolved values; pipeline_lib.orchestrate passes them to each training phase as its only non-path flags.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from pipeline_lib import phases

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILES_PATH = REPO_ROOT / "configs" / "batch_profiles.yaml"
PROFILE_NAMES = ("aggressive", "balanced", "conservative", "tiny", "smoke")
FIXED_PROFILES = ("tiny", "smoke")  # --quick-test leaves these as they are
PHASES = tuple(p.name for p in phases.TRAINED)  # every trained phase has a batch entry per profile


@dataclass(frozen=True)
class PhaseBatch:
    batch: int
    accum: int
    seq: int
    max_steps: int
    save_steps: int | None = None  # None: the phase's configs/*.yaml value

    @property
    def effective_batch(self) -> int:
        return self.batch * self.accum


def per_gpu_accum(accum: int, gpus: int) -> int:
    """Accumulation per GPU that keeps the profile's global batch (batch x accum) when it divides; else rounds up."""
    return max(1, -(-accum // gpus))


def load_profiles(path: Path = PROFILES_PATH) -> dict:
    data = yaml.safe_load(Path(path).read_text())
    for name in PROFILE_NAMES:
        if name not in data.get("profiles", {}):
            raise ValueError(f"{path}: profile '{name}' missing")
        for phase in PHASES:
            _check_entry(data["profiles"][name].get(phase), f"{path}: profiles.{name}.{phase}")
    for phase in PHASES:
        _check_entry(data.get("quick_test", {}).get(phase), f"{path}: quick_test.{phase}")
    return data


def _check_entry(entry: dict | None, where: str) -> None:
    if not isinstance(entry, dict) or not {"batch", "accum", "seq", "max_steps"} <= set(entry) or not set(entry) <= {
            "batch", "accum", "seq", "max_steps", "save_steps"}:
        raise ValueError(f"{where}: expected keys batch, accum, seq, max_steps (and optionally save_steps); "
                         f"got {entry!r}")
    if "save_steps" in entry and (not isinstance(entry["save_steps"], int) or entry["save_steps"] < 1):
        raise ValueError(f"{where}.save_steps must be a positive integer, got {entry['save_steps']!r}")
    for key in ("batch", "accum", "seq"):
        if not isinstance(entry[key], int) or entry[key] < 1:
            raise ValueError(f"{where}.{key} must be a positive integer, got {entry[key]!r}")
    if not isinstance(entry["max_steps"], int) or (entry["max_steps"] < 1 and entry["max_steps"] != -1):
        raise ValueError(f"{where}.max_steps must be -1 or a positive integer, got {entry['max_steps']!r}")


def resolve(profile: str, phase: str, *, quick_test: bool = False, path: Path = PROFILES_PATH) -> PhaseBatch:
    if profile not in PROFILE_NAMES:
        raise ValueError(f"--batch-profile must be one of {', '.join(PROFILE_NAMES)}; got '{profile}'")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}; got '{phase}'")
    data = load_profiles(path)
    entry = dict(data["profiles"][profile][phase])
    if quick_test and profile not in FIXED_PROFILES:
        entry = dict(data["quick_test"][phase])
    return PhaseBatch(**entry)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print a phase's resolved batch profile")
    parser.add_argument("profile", choices=PROFILE_NAMES)
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--quick-test", action="store_true")
    parser.add_argument("--format", choices=("shell", "json"), default="shell")
    args = parser.parse_args(argv)
    pb = resolve(args.profile, args.phase, quick_test=args.quick_test)
    if args.format == "json":
        print(json.dumps(asdict(pb)))
    else:
        print(f"BATCH={pb.batch} ACCUM={pb.accum} SEQ={pb.seq} MAX_STEPS={pb.max_steps}")


if __name__ == "__main__":
    main()
