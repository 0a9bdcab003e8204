"""Phase settings: dataclass < machine defaults < the phase's YAML in configs/ < command line, through TrlParser.
Every phase script parses here (scripts 13, 14, 17, 19; GRPO too), so ``configs/*.yaml`` is the single source of
training settings and the orchestrator passes only paths and batch-profile values."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = REPO_ROOT / "configs"


def default_config(phase_name: str) -> Path:
    """configs/<the phase's config file> (pipeline_lib.phases)."""
    from pipeline_lib.phases import get

    return CONFIGS_DIR / get(phase_name).config


def parse_args_with_default_config(dataclass_types: tuple[type, ...], default_config: str | os.PathLike,
                                   argv: Sequence[str] | None = None,
                                   defaults: dict[str, Any] | None = None,
                                   description: str | None = None) -> tuple[Any, ...]:
    """TrlParser over ``dataclass_types``. Precedence: dataclass < ``defaults`` < YAML < CLI.

    Without ``--config`` the phase's YAML in configs/ is loaded, so a bare call runs with the same settings as
    ``--config configs/<phase>.yaml``. A ``--hub_token`` moves to the process's HF_TOKEN
    (provenance.detach_hub_token): never into training_args.bin. ``description`` (the script's docstring) heads
    ``--help`` with its line breaks kept.
    """
    import argparse

    from trl import TrlParser

    from pipeline_lib.provenance import detach_hub_token

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in args and Path(default_config).is_file():
        args = ["--config", str(default_config), *args]
    if description is None:
        parser = TrlParser(dataclass_types)
    else:
        class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
            """Defaults after each flag (HfArgumentParser's formatter) and the description as written."""

        parser = TrlParser(dataclass_types, description=description, formatter_class=HelpFormatter)
    if defaults:
        parser.set_defaults(**defaults)
    return tuple(detach_hub_token(parsed) for parsed in parser.parse_args_and_config(args))
