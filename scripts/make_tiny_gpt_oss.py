"""Build the embedded tiny GPT-OSS (random weights, real architecture and tokenizer).

    python scripts/make_tiny_gpt_oss.py [--output_dir checkpoints/tiny-gpt-oss] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.tiny_model import build_tiny_gpt_oss  # noqa: E402

DEFAULT_DIR = "checkpoints/tiny-gpt-oss"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=DEFAULT_DIR)
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder already holds it")
    args = parser.parse_args()
    out = build_tiny_gpt_oss(args.output_dir, force=args.force)
    info = json.loads((out / "tiny_model.json").read_text())
    print(f"tiny GPT-OSS ready: {out} ({info['parameters']:,} parameters)")


if __name__ == "__main__":
    main()
