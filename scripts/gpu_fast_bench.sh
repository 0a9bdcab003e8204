#!/usr/bin/env bash
# One GPU call (<= 10 min) of scripts/bench_train_step.py on the real GPT-OSS-20B shape: our fast path, stock
# transformers + PEFT and Unsloth, same card, same process tree, results in $OUT/bench.json (+ bench.log).
#
#   OUT=/path bash scripts/gpu_fast_bench.sh            # MODE=main (default): the headline rows
#   MODE=extra OUT=/path bash scripts/gpu_fast_bench.sh # balanced-profile micro-batches + QLoRA
#   EXTRA="--device cpu --model checkpoints/tiny-gpt-oss --seq-scale 0.01 --steps 1 --warmup 1" ...  # CPU smoke
#
# Unsloth comes from .wheelhouse/site.tar.gz (scripts/build_wheelhouse.sh) when it is there; without it the unsloth
# rows are recorded as skipped. The bench deletes what it writes (Unsloth's 39 GB model copy included).
#
# Wall time (MODE=main, 24 layers), from the H100/H200 step times in docs/BENCHMARKS.md: ~15 s start per backend;
# fast: 3 workloads x (~10 s numerics check + ~30 s flex compile) + ~40 s of steps ~ 3 min; hf: 2 workloads x ~30 s
# compile + ~35 s of steps ~ 2 min; unsloth: save the random model ~1 min, then per workload load ~25 s + compile
# ~50 s + steps. --time-budget-s 430 starts no workload after 430 s and --grace-s 80 kills a backend still running
# at 510 s, so the call ends by ~8.8 min whatever happens; workloads that did not fit are recorded as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/bench_out}
MODE=${MODE:-main}
LAYERS=${LAYERS:-24}
BUDGET=${BUDGET:-430}
GRACE=${GRACE:-80}
mkdir -p "$OUT"
SITE=""
if [ -f .wheelhouse/site.tar.gz ]; then
  SITE=$(mktemp -d /tmp/site.XXXXXX)
  tar -xzf .wheelhouse/site.tar.gz -C "$SITE"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
else
  echo "no .wheelhouse/site.tar.gz: Unsloth will be recorded as skipped"
fi
trap '[ -n "$SITE" ] && rm -rf "$SITE"' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "MODE=$MODE LAYERS=$LAYERS (of 24) BUDGET=${BUDGET}s GRACE=${GRACE}s"
case "$MODE" in
  main)
    ARGS=(--backends fast,hf,unsloth --workloads phase1_r64_4k,phase2_r128_32k_packed,ipo_2x8192
          --only hf=phase1_r64_4k,phase2_r128_32k_packed --only unsloth=phase1_r64_4k,phase2_r128_32k_packed) ;;
  extra)
    ARGS=(--backends fast,hf,unsloth --workloads toolcall_8x8192,ipo_2x8192 --only unsloth=qlora_r64_4k) ;;
  *) echo "MODE must be main or extra, got $MODE" >&2; exit 2 ;;
esac
"${PYTHON:-python3}" scripts/bench_train_step.py --layers "$LAYERS" "${ARGS[@]}" --memory-cap-gb 80 --profile \
  --time-budget-s "$BUDGET" --grace-s "$GRACE" --json "$OUT/bench.json" ${EXTRA:-} 2>&1 | tee "$OUT/bench.log" \
  | { grep -v -e "Loading weights" -e "Writing model shards" -e "it/s\]" || true; }
