"""Time LoRA training steps of GPT-OSS: stock transformers + PEFT, Unsloth and our fast path, same card, same run.

    python scripts/bench_train_step.py --layers 24 --backends fast,hf,unsloth --memory-cap-gb 80 --json out.json
    python scripts/bench_train_step.py --device cpu --model checkpoints/tiny-gpt-oss --backends hf,fast \
        --workloads phase1_r64_4k --seq-scale 0.03125 --steps 2 --warmup 1

See pipeline_lib/bench_train_step.py for the workloads, the FLOP formula and the numerics check; docs/BENCHMARKS.md
for the measured numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.bench_train_step import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
