#!/usr/bin/env bash
# Is a trained real-width model's BF16 GGUF as close to its HF reference as an untrained one's? Smoke run N's trained
# export measured rel_median 0.170 against probes.float32_forward on the H200, where an untrained 2-layer model had
# measured 0.037 and the CPU smoke's trained tiny model 0.011 (docs/BENCHMARKS.md "Smoke run N"). One device call,
# ~7 minutes on an H200 (carry .wheelhouse/site.tar.gz):
# 1. the 2-layer real-shape MXFP4 model and the quick-test data, as scripts/gpu_smoke.sh builds them;
# 2. tool-calling SFT through the orchestrator (--batch-profile smoke, the default backend), stopped once its final/
#    adapter is written (its phase_metrics.json, with the backend and first-step time, is copied to $OUT);
# 3. scripts/bench_reference_precision.py --adapter <that adapter> --export --cpu-reference: the BF16 GGUF against
#    the export's bf16 forward, its float32_forward on the GPU and its true fp32 forward on the CPU, per position.
#    Without an adapter (the phase failed: its log's tail is printed) the bench exports its random one instead.
#
#   OUT=$OUT bash scripts/gpu_gguf_trained.sh          # WORKDIR (default /tmp/gguf_trained) is deleted at the end
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${WORKDIR:-/tmp/gguf_trained}
OUT=${OUT:-$W/out}
mkdir -p "$W/site" "$OUT"
step() { echo "[gguf-trained $(date -u +%H:%M:%S) +${SECONDS}s] $*"; }
[[ -f $REPO_ROOT/.wheelhouse/site.tar.gz && ! -d $W/site/unsloth ]] &&
    tar -xzf "$REPO_ROOT/.wheelhouse/site.tar.gz" -C "$W/site"
export PYTHONPATH=$W/site:$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 GPT_OSS_PIPELINE_CACHE=$W/cache
export PYTHON=${PYTHON:-python3}
cd "$REPO_ROOT"
# llama.cpp's converter from the wheelhouse, where pipeline_lib.gguf_export looks for it (as gpu_smoke.sh does)
CONVERTER=$GPT_OSS_PIPELINE_CACHE/llama-cpp-python-0.3.36/llama.cpp
if [[ -f $W/site/llama_cpp_converter/convert_hf_to_gguf.py && ! -f $CONVERTER/convert_hf_to_gguf.py ]]; then
    mkdir -p "$(dirname "$CONVERTER")" && cp -r "$W/site/llama_cpp_converter" "$CONVERTER"
fi

MODEL=$W/gpt-oss-2l-mxfp4
"$PYTHON" scripts/make_random_gpt_oss.py --output_dir "$MODEL" --layers 2 --layout mxfp4 >"$W/build.out" 2>&1
step "model built: $MODEL"
# DATA_DIR TOOL_DIR KILL_DIR GRPO_TASKS GRPO_LANGUAGE LOG_DIR STATE_DIR of the --quick-test run
eval "$("$PYTHON" -m pipeline_lib.smoke paths --workdir "$W/run" --model "$MODEL" --kill-phase none)"
"$PYTHON" scripts/tui_data_prep.py --source local --local-dir data/samples --quick-test --output-dir "$DATA_DIR" \
    >"$W/data.out" 2>&1
step "data prepared: $DATA_DIR"

setsid bash scripts/run_tui_pipeline.sh --model "$MODEL" --workdir "$W/run" --skip-data --quick-test \
    --batch-profile smoke --save-steps 2 --gates-config configs/gates_random_weights.yaml >"$W/pipeline.out" 2>&1 &
PIPE=$!
while kill -0 "$PIPE" 2>/dev/null && [[ ! -f $TOOL_DIR/final/phase_metrics.json ]] && ((SECONDS < 330)); do
    sleep 1
done
kill -9 -- -"$PIPE" 2>/dev/null || true
wait "$PIPE" 2>/dev/null || true
ADAPTER=()
if [[ -f $TOOL_DIR/final/phase_metrics.json ]]; then
    cp "$TOOL_DIR/final/phase_metrics.json" "$OUT/tool_calling_phase_metrics.json"
    ADAPTER=(--adapter "$TOOL_DIR/final")
    step "tool-calling SFT done: $(grep -o '"training_path": "[^"]*"' "$TOOL_DIR/final/phase_metrics.json")"
else
    step "tool-calling SFT did not finish; its log's tail:"
    tail -n 40 "$W/pipeline.out"
fi
cp "$W/pipeline.out" "$OUT/pipeline.out" 2>/dev/null || true

"$PYTHON" scripts/bench_reference_precision.py --model "$MODEL" --workdir "$W/bench" --out "$OUT/gguf_trained.json" \
    --skip-fp32-model --export --cpu-reference ${ADAPTER[@]+"${ADAPTER[@]}"} 2>&1 | grep -v 'Loading weights' | tail -n 30
step "bench done"
"$PYTHON" - "$OUT/gguf_trained.json" <<'EOF'
import json, sys
from pipeline_lib import phases
r = json.load(open(sys.argv[1])).get(phases.EXPORT.name, {})
for k, v in (r.get("bf16_gguf_vs") or {}).items():
    print(f"BF16 GGUF vs {k}: median {v['rel_median']:.4f} p90 {v['rel_p90']:.4f} top-1 {v['argmax_agreement']:.3f}")
print("float32_forward vs cpu fp32:", json.dumps(r.get("float32_forward_vs_cpu_fp32")))
print("gguf:", r.get("gguf_status"), json.dumps(r.get("gguf"))[:1500], r.get("stderr_tail", "")[-800:])
EOF
rm -rf "$W/run" "$W/bench" "$MODEL" "$W/cache"
