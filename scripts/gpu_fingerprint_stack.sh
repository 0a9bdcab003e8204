#!/usr/bin/env bash
# ONE GPU call (347 s on an H200, 2026-11-29) measuring the adapter fingerprint across stacks: Unsloth trains
# agent-SFT adapters on a random 2-layer real-shape GPT-OSS, transformers + PEFT re-checks them as IPO does, and
# scripts/bench_fingerprint_stack.py reports each candidate rule on the saved adapters and on misread copies
# (docs/BENCHMARKS.md "Fingerprint across stacks").
#
#   OUT=/path bash scripts/gpu_fingerprint_stack.sh          # carry .wheelhouse/site.tar.gz (Unsloth)
#   SEEDS="3407 1" STEPS=8 LAYERS=2                          # the defaults: smoke run M's agent SFT, two seeds
#
# Writes $OUT/fingerprint_stack.json and $OUT/fingerprint_stack.log; deletes its work folder at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fingerprint_stack_out}
WORK=${WORK:-/tmp/fingerprint_stack_work}
SEEDS=${SEEDS:-3407 1}
STEPS=${STEPS:-8}
LAYERS=${LAYERS:-2}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/fingerprint_stack.log") 2>&1
trap 'rm -rf "$WORK"' EXIT
if [ -f .wheelhouse/site.tar.gz ] && ! "$PY" -c "import unsloth" 2>/dev/null; then
    mkdir -p "$WORK/site"
    tar -xzf .wheelhouse/site.tar.gz -C "$WORK/site"
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 GPT_OSS_PIPELINE_CACHE=$WORK/cache TRITON_CACHE_DIR=$WORK/cache/triton \
    TORCHINDUCTOR_CACHE_DIR=$WORK/cache/inductor
# step NAME LOG CMD...: CMD's output to LOG (its last 40 lines shown on failure), its time to this log
step() {
    local t=$SECONDS name=$1 log=$2
    shift 2
    echo "[$(date -u +%T)] $name"
    "$@" >"$log" 2>&1 || { tail -40 "$log"; echo "$name FAILED"; exit 1; }
    echo "[$(date -u +%T)] $name: done in $((SECONDS - t)) s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the merged model IPO loads is bf16 on disk: build the same layout
step "build model" "$WORK/build.log" "$PY" scripts/make_random_gpt_oss.py --output_dir "$WORK/model" \
    --layers "$LAYERS" --layout bf16
step "data" "$WORK/data.log" "$PY" scripts/tui_data_prep.py --source local --local-dir data/samples --quick-test \
    --output-dir "$WORK/data"
ADAPTERS=()
for seed in $SEEDS; do
    # the smoke run's agent-SFT command (its default config; backend auto = Unsloth on CUDA), one seed each
    step "agent SFT seed $seed" "$WORK/train_$seed.log" "$PY" scripts/14_train_core_agent.py \
        --base_model "$WORK/model" --train_data_path "$WORK/data/agent_traj/train" \
        --max_seq_length 512 --per_device_train_batch_size 1 --gradient_accumulation_steps 1 --max_steps "$STEPS" \
        --output_dir "$WORK/a$seed" --save_steps 1000 --seed "$seed"
    grep -h "training path\|trainable=" "$WORK/train_$seed.log" || true
    ADAPTERS+=(--adapter "$WORK/a$seed/final")
done
step "bench" "$OUT/bench_stdout.log" "$PY" scripts/bench_fingerprint_stack.py --model "$WORK/model" "${ADAPTERS[@]}" \
    --out "$OUT/fingerprint_stack.json"
grep -v "Loading weights\|Warning\|warn" "$OUT/bench_stdout.log" || true
