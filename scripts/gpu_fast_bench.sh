#!/usr/bin/env bash
# ONE GPU call (<= 9.5 min) for issue 8: scripts/bench_train_step.py on the real GPT-OSS-20B shape — our fast path,
# stock transformers + PEFT and Unsloth, same run, every process capped at 80 GB (an H100's memory) — plus the
# batch-profile fits (item 3) and the real agent-SFT phase packed at 32K on the fast path (item 4).
#
#   OUT=/path bash scripts/gpu_fast_bench.sh                 # carry .wheelhouse/site.tar.gz for the unsloth rows
#   TINY=1 OUT=/tmp/x bash scripts/gpu_fast_bench.sh         # CPU smoke of the whole script on the tiny model
#   GPU_IDS=1 PARTS="fast_more fits phase_run" TOTAL=300 OUT=/path bash scripts/gpu_fast_bench.sh   # a subset, GPU 1
#   (UNSLOTH_WORKLOADS=a,b narrows the unsloth part's workloads; FAST_MAIN_WORKLOADS=a,b fast_main's)
#   PARTS="fast_main optim8bit phase_run_8bit" FAST_MAIN_WORKLOADS=phase2_r128_32k_packed OUT=/path \
#       bash scripts/gpu_fast_bench.sh      # the Phase 2 memory question: AdamW vs 8-bit AdamW, same call
#
# It writes, under $OUT (small files only, each < 2 MB):
#   bench.json          every result so far (merged after each part: partial results survive a later hang)
#   bench.log           this script's log; parts/<part>.log.tail = the last 40 KB of each part's own log
#   parts/<part>.json   each part's raw results
#
# Parts run only when PARTS names them: optim8bit (fast, `--optim adamw_bnb_8bit`, OPTIM8_WORKLOADS, default the
# packed 32K row) and phase_run_8bit (the phase run below with `--optim adamw_bnb_8bit`).
# Parts, each under `timeout` (a hung part cannot eat the rest; a bench part also stops starting workloads MARGIN s
# before its own limit: 70 s for fast_main and unsloth, 40 for hf_main, 25 for fits). With 2+ GPUs (nvidia-h200-x2,
# recommended) two lanes run at once, one per GPU; timed rows never share a GPU:
#   lane 0: fast_main   fast: phase1_r64_4k, phase2_r128_32k_packed, ipo_2x8192, toolcall_8x8192  (~260 s, with
#                       ~30 s to compile the fused SwiGLU/combine kernels once)
#           hf_main     hf: phase1_r64_4k; hf_ce: phase2_r128_32k_packed (stock experts + chunked CE, as in TRL;
#                       plain hf OOM'd there at the cap in both 2026-11-28 runs: its fp32 logits alone are 26 GB)
#                                                                                                   (~130 s)
#           fits        fast: one step of each aggressive/balanced/conservative micro-batch shape that fast_main
#                       does not already measure (7 of 10; balanced first; what the lane has time for) (~100 s)
#   lane 1: phase_run   scripts/14_train_core_agent.py --backend fast, packed 32K rows, 20 steps on a repeated
#                       batch, ITEM4_LAYERS (4) real-shape layers (24 layers need ~4 min alone)      (~130 s)
#           unsloth     unsloth: phase1_r64_4k, phase2 (unpacked, as shipped), qlora_r64_4k      (~350 s: 1 min
#                       to save the random model to disk, then ~25 s load + ~60 s compile per workload)
# With one GPU (nvidia-h200, or GPU_IDS=1) the parts run one after another, each limited to the time left: fast_main
# (Phase 1 and 2 only), hf_main, unsloth, fast_more (IPO, tool calling), hf_ce (stock on the packed 32K row alone),
# phase_run, fits. Expect only the first four to fit; Unsloth's QLoRA, the fits and the phase run need the second
# lane (or a later call with PARTS). What does not fit is recorded as not run.
# Estimates from the H200 run of 2026-11-28 (docs/BENCHMARKS.md): fast first step ~30 s (compile), numerics check
# 3-12 s, Unsloth first step 65 s. Disk: Unsloth's model copy (39 GB) and the phase run's model (~9 GB at 4 layers)
# are deleted when their part ends, and never coexist (same lane).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/bench_out}
LAYERS=${LAYERS:-24}
ITEM4_LAYERS=${ITEM4_LAYERS:-4}
TOTAL=${TOTAL:-560}          # seconds for the whole script (the call's limit is 570 s: leave the merge its time)
CAP=${CAP:-80}
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/gpu_fast_bench_work}
START=$(date +%s)
mkdir -p "$OUT/parts" "$WORK"
exec > >(tee -a "$OUT/bench.log") 2>&1

SITE=""
cleanup() { [ -n "$SITE" ] && rm -rf "$SITE"; rm -rf "$WORK"; }
trap cleanup EXIT
if [ -f .wheelhouse/site.tar.gz ] && [ -z "${TINY:-}" ]; then
  SITE=$(mktemp -d /tmp/site.XXXXXX)
  tar -xzf .wheelhouse/site.tar.gz -C "$SITE"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no .wheelhouse/site.tar.gz (or TINY): Unsloth rows will be recorded as skipped"
fi
export HF_HUB_OFFLINE=1 PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}

BENCH=(--layers "$LAYERS" --memory-cap-gb "$CAP" --warmup 1 --steps 5)
if [ -n "${TINY:-}" ]; then  # CPU smoke: the tiny model, rows scaled down, one lane, no phase run
  TINYDIR="$WORK/tiny-gpt-oss"
  "$PY" -c "from pipeline_lib.tiny_model import build_tiny_gpt_oss; build_tiny_gpt_oss('$TINYDIR')" >/dev/null
  BENCH=(--device cpu --model "$TINYDIR" --seq-scale 0.004 --warmup 1 --steps 1 --check-tokens 48)
  NGPU=0
else
  NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || true
fi
# GPU_IDS="1": use only these GPUs (e.g. the second GPU while scripts/gpu_smoke.sh holds the first). part() sets
# CUDA_VISIBLE_DEVICES itself, so an outer CUDA_VISIBLE_DEVICES would be overridden: this is the switch.
read -r -a GPUS <<<"${GPU_IDS:-$(seq -s ' ' 0 $((NGPU > 0 ? NGPU - 1 : 0)))}"
[ -z "${GPU_IDS:-}" ] || NGPU=${#GPUS[@]}
# PARTS="fast_more fits phase_run": run only these parts (a second call finishing what the first had no time for).
wanted() { [ -z "${PARTS:-}" ] || [[ " $PARTS " == *" $1 "* ]]; }
named() { [[ " ${PARTS:-} " == *" $1 "* ]]; }
df -h "$WORK" | tail -1
echo "LAYERS=$LAYERS ITEM4_LAYERS=$ITEM4_LAYERS TOTAL=${TOTAL}s CAP=${CAP}GB GPUs=$NGPU start=$(date -u +%FT%TZ)"

left() { echo $(( TOTAL - ($(date +%s) - START) )); }

merge() {  # all parts so far -> bench.json (under a lock: two lanes finish parts independently)
  ( command -v flock >/dev/null && flock 9
    "$PY" -m pipeline_lib.bench_train_step --merge "$OUT"/parts/*.json --json "$OUT/bench.json.tmp" \
      > "$OUT/merge.log" 2>&1 && mv "$OUT/bench.json.tmp" "$OUT/bench.json" || echo "merge failed: see merge.log"
  ) 9>"$OUT/.merge.lock"
}

# part NAME WANT_SECONDS GPU COMMAND...: runs COMMAND under `timeout` for min(WANT, time left) seconds on GPU
# (CUDA_VISIBLE_DEVICES); "@T" in COMMAND becomes the seconds granted. Skipped (and recorded) under 45 s.
part() {
  local name=$1 want=$2 gpu=$3; shift 3
  wanted "$name" || return 0
  local avail; avail=$(left)
  local t=$(( want < avail ? want : avail ))
  if [ "$t" -lt 45 ]; then
    echo "[$name] not run: ${avail}s left of ${TOTAL}s"
    printf '[{"backend": "summary", "workload": "part_%s", "status": "skipped", "reason": "not run: %ss left of the %ss call"}]\n' \
      "$name" "$avail" "$TOTAL" > "$OUT/parts/$name.json"
    merge; return 0
  fi
  local args=("${@//@T-30/$(( t - 30 ))}")
  args=("${args[@]//@T/$t}")
  echo "[$name] start $(date -u +%T) limit ${t}s gpu ${gpu:-cpu}: ${args[*]}"
  local rc=0
  CUDA_VISIBLE_DEVICES=$gpu timeout -k 20 "$t" "${args[@]}" > "$WORK/$name.log" 2>&1 || rc=$?
  grep -v -e "Loading weights" -e "Writing model shards" -e "it/s\]" "$WORK/$name.log" | tail -c 40000 \
    > "$OUT/parts/$name.log.tail" || true
  grep -E '^\s+(-> |numerics check|first step)|^== |Traceback|Error' "$WORK/$name.log" | tail -40 || true
  echo "[$name] rc=$rc after $(( $(date +%s) - START ))s total"
  rm -f "$WORK/$name.log"
  merge
}

# bench parts: the inner budget stops starting workloads 70 s before the part's limit and kills a worker 20 s
# before it; the outer timeout (SIGTERM) makes the parent write what finished.
bench() {  # bench NAME WANT GPU ARGS...
  local name=$1 want=$2 gpu=$3; shift 3
  part "$name" "$want" "$gpu" "$PY" scripts/bench_train_step.py "${BENCH[@]}" "$@" \
    --time-budget-s "@T" --budget-margin-s "${MARGIN:-70}" --grace-s "${GRACE:-50}" --workdir "$WORK" \
    --json "$OUT/parts/$name.json"
}

lane0() {
  local g=$1
  bench fast_main 300 "$g" --backends fast --profile \
    --workloads phase1_r64_4k,phase2_r128_32k_packed,ipo_2x8192,toolcall_8x8192
  MARGIN=40 GRACE=25 bench hf_main 160 "$g" --backends hf,hf_ce --profile --workloads phase1_r64_4k \
    --only hf_ce=phase2_r128_32k_packed
}
# FITS_WORKLOADS=profile_fits: every distinct profile shape, also those a timed workload measures (when that
# workload is not in the same call); FITS_WANT / PHASE_RUN_WANT: the parts' time wishes in seconds.
lane0_tail() {
  MARGIN=25 GRACE=15 bench fits "${FITS_WANT:-100}" "$1" --backends fast --workloads "${FITS_WORKLOADS:-profile_fits_rest}"
}
lane1() {
  bench unsloth 390 "$1" --backends unsloth \
    --workloads "${UNSLOTH_WORKLOADS:-phase1_r64_4k,phase2_r128_32k_packed,qlora_r64_4k}"
}
phase_run() {  # phase_run GPU [NAME [PHASE FLAGS...]]
  local gpu=$1 name=${2:-phase_run}; shift; shift || true
  wanted "$name" || return 0
  if [ -n "${TINY:-}" ]; then
    printf '[{"backend": "summary", "workload": "part_%s", "status": "skipped", "reason": "TINY: CPU smoke"}]\n' \
      "$name" > "$OUT/parts/$name.json"; merge; return 0
  fi
  local extra=(); [ $# -eq 0 ] || extra=("--extra=$*")
  part "$name" "${PHASE_RUN_WANT:-170}" "$gpu" "$PY" scripts/bench_gpu_sft.py --phase 2 --backends fast --layers "$ITEM4_LAYERS" \
    --steps 20 --seq 32768 --doc-tokens 3000 --repeat --cleanup --timeout 600 --total-timeout "@T-30" \
    --workdir "$WORK/$name" --out "$WORK" --json "$OUT/parts/$name.json" "${extra[@]}"
}

if [ "${LANES:-$NGPU}" -ge 2 ]; then  # LANES=2 forces the two-lane layout (its CPU test in TINY mode)
  ( lane0 "${GPUS[0]}"; lane0_tail "${GPUS[0]}" ) &
  A=$!
  ( phase_run "${GPUS[1]}"; lane1 "${GPUS[1]}" ) &
  B=$!
  wait "$A" || true
  wait "$B" || true
else  # one GPU (or TINY): the headline rows first — fast, hf and Unsloth on Phase 1 and 2 — then the rest
  G=$([ "$NGPU" -ge 1 ] && echo "${GPUS[0]}" || echo "")
  bench fast_main 190 "$G" --backends fast --profile --workloads "${FAST_MAIN_WORKLOADS:-phase1_r64_4k,phase2_r128_32k_packed}"
  ! named optim8bit || bench optim8bit 170 "$G" --backends fast --optim adamw_bnb_8bit \
    --workloads "${OPTIM8_WORKLOADS:-phase2_r128_32k_packed}"
  MARGIN=40 GRACE=25 bench hf_main 160 "$G" --backends hf,hf_ce --profile --workloads phase1_r64_4k \
    --only hf_ce=phase2_r128_32k_packed
  lane1 "$G"
  bench fast_more 170 "$G" --backends fast --workloads ipo_2x8192,toolcall_8x8192
  # stock PEFT experts + chunked CE on the packed 32K row alone (hf_main's share ran out before its first step in
  # run 4): the "fast >= 1.6x hf packed" ratio
  MARGIN=40 GRACE=25 bench hf_ce 250 "$G" --backends hf_ce --workloads phase2_r128_32k_packed
  phase_run "$G"; lane0_tail "$G"
  ! named phase_run_8bit || phase_run "$G" phase_run_8bit --optim adamw_bnb_8bit
fi
merge
rm -f "$OUT/.merge.lock"
cat "$OUT/merge.log" || true
echo "done in $(( $(date +%s) - START ))s; files:"; ls -la "$OUT" "$OUT/parts"
du -sh "$OUT"
