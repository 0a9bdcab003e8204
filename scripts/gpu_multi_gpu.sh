#!/usr/bin/env bash
# One call on a 2-GPU host (<= 9 min): Phase 1 (scripts/13_train_lang_adapter.py) on the GPT-OSS-20B shape through
# accelerate launch, the way run_tui_pipeline.sh --gpus 2 starts it.
#
#   OUT=/path bash scripts/gpu_multi_gpu.sh [--layers 4] [--budget 520 (--cpu: 1500)] [--backend hf] [--workdir DIR] [--cpu]
#                                            [--fsdp-only]   (skip (a): only the FSDP2 kill -9 + resume, ~5 min)
#
# (a) DDP scaling: the same Phase 1 run on 1 GPU (plain python, accumulation 2A) then on 2 GPUs (accelerate launch
#     --config_file configs/accelerate/ddp.yaml, accumulation A): same global batch, same rows, every row exactly
#     --max_seq_length tokens (pipeline_lib/multi_gpu.py data), tok/s = the median over timed steps of the global
#     tokens per step; ratio 2 GPUs / 1 GPU (target >= 1.85).
# (b) FSDP2 (configs/accelerate/fsdp2.yaml, 2 processes): kill -9 of the whole process group once checkpoint-2 is
#     written, then the same command with --resume_from_checkpoint auto must resume from it and finish max_steps
#     with the LoRA-update check passing.
# (c) multi_gpu_report.{json,md} + the four runs' logs (no weights) under $OUT (or <workdir>/out).
# Model: scripts/make_random_gpt_oss.py --layers L --layout bf16 (every tensor at its 20B size, the 201,088-row
# embedding and lm_head included; bf16 so no rank dequantizes MXFP4 on the CPU). Packages: .wheelhouse/site.tar.gz
# (TRL, datasets, harmony; scripts/build_wheelhouse.sh) over the image's torch/transformers/peft/accelerate.
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1): on
# shared hosts a program using it can take the GPUs out of service.
# --cpu: the same steps on the tiny GPT-OSS with 2 gloo processes started by torchrun (CUDA hidden): accelerate 1.15
# has no multi-process CPU launch without mpirun and no FSDP on CPU, so there (b) runs as DDP and checks the
# kill -9 / resume logic only.
# Exit 0 only when both scaling runs finished (or --fsdp-only skipped them) and the FSDP2 resume passed (the ratio
# itself is reported, not gated).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORKDIR=${TMPDIR:-/tmp}/gpu_multi_gpu
LAYERS=4
BUDGET=""
BACKEND=hf
CPU=0
FSDP_ONLY=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --workdir) WORKDIR=$2; shift ;;
        --layers) LAYERS=$2; shift ;;
        --budget) BUDGET=$2; shift ;;
        --backend) BACKEND=$2; shift ;;
        --cpu) CPU=1 ;;
        --fsdp-only) FSDP_ONLY=1 ;;
        -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "gpu_multi_gpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $LAYERS =~ ^[1-9][0-9]*$ ]] || { echo "--layers must be a positive integer, got '$LAYERS'" >&2; exit 2; }
BUDGET=${BUDGET:-$( ((CPU)) && echo 1500 || echo 520)} # GPU: the device tool's 600 s per command, minus margin
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "--budget must be seconds, got '$BUDGET'" >&2; exit 2; }
case $BACKEND in hf | fast) ;; *) echo "--backend must be hf or fast, got '$BACKEND'" >&2; exit 2 ;; esac

# Before anything starts: NVLink multicast off in NCCL, PyTorch's symmetric memory and NVSHMEM.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

T0=$SECONDS
mkdir -p "$WORKDIR"
WORKDIR=$(realpath "$WORKDIR")
OUT_DIR=${OUT:-$WORKDIR/out}
mkdir -p "$OUT_DIR"
EVENTS=$WORKDIR/events.jsonl
: >"$EVENTS"
export GPT_OSS_PIPELINE_CACHE=$WORKDIR/pipeline_cache TORCHINDUCTOR_CACHE_DIR=$WORKDIR/.cache/inductor \
    TRITON_CACHE_DIR=$WORKDIR/.cache/triton
log() { printf '[multi-gpu %s +%ds] %s\n' "$(date '+%H:%M:%S')" $((SECONDS - T0)) "$*" >&2; }
left() { echo $((BUDGET - (SECONDS - T0))); }
event() { # event STEP STATUS SECONDS NOTE
    "$PYTHON" -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "status": sys.argv[2],
        "seconds": int(sys.argv[3]), "note": sys.argv[4]}))' "$1" "$2" "$3" "${4:-}" >>"$EVENTS"
    log "$1: $2 ($3 s) ${4:-}"
}
fail() { event "$1" FAILED 0 "$2"; log "STOPPED: $2"; exit 1; }
# kill_tree SIGNAL PID: PID and every process under it. Not kill -- -PGID: torchrun (which accelerate launch runs)
# starts its workers in new sessions, so killing the launcher's group left both ranks training (seen in the --cpu
# run: the "killed" run finished all its steps).
kill_tree() {
    local sig=$1 pids=$2 all="" next
    while [[ -n $pids ]]; do
        all="$all $pids"
        next=""
        for p in $pids; do next="$next $( (ps -o pid= --ppid "$p" || true) | tr '\n' ' ')"; done
        pids=$(echo $next)
    done
    # shellcheck disable=SC2086
    kill "-$sig" $all 2>/dev/null || true
}
# timed STEP LOGFILE CMD...: own process group, killed (TERM, then KILL) when the budget minus 25 s (the report) is
# spent; status and wall time recorded.
timed() {
    local step=$1 logfile=$2 t=$SECONDS rc=0 pid
    shift 2
    if (($(left) <= 25)); then
        event "$step" "not run (budget spent)" 0
        return 1
    fi
    setsid "$@" >"$logfile" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null && (($(left) > 25)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        kill_tree TERM "$pid"
        sleep 3
        kill_tree KILL "$pid"
    fi
    wait "$pid" 2>/dev/null || rc=$?
    if ((rc == 0)); then event "$step" ok $((SECONDS - t)); else
        event "$step" "FAILED rc=$rc" $((SECONDS - t)) "$(tail -n 3 "$logfile" | tr '\n' ' ' | cut -c1-300)"
        tail -n 30 "$logfile" >&2
    fi
    return "$rc"
}

# ---------------------------------------------------------------- 0. this machine, fail fast
if ((CPU)); then
    export CUDA_VISIBLE_DEVICES=""
else
    command -v nvidia-smi >/dev/null || fail gpus "no nvidia-smi: run with --cpu on a machine without GPUs"
    ngpu=$(nvidia-smi --list-gpus | wc -l)
    ((ngpu >= 2)) || fail gpus "needs 2 GPUs, nvidia-smi lists $ngpu"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
    SITE=$WORKDIR/site
    if [[ -f $REPO_ROOT/.wheelhouse/site.tar.gz ]]; then
        rm -rf "$SITE" && mkdir -p "$SITE"
        tar -xzf "$REPO_ROOT/.wheelhouse/site.tar.gz" -C "$SITE"
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    fi
fi
export PYTHONPATH=$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}
ENVIRONMENT=$("$PYTHON" - <<'EOF'
import importlib.metadata as md
import torch
names = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "openai-harmony")
out = [f"{n}={md.version(n)}" for n in names]
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(" ".join(out) + " gpus=" + (",".join(gpus) or "none (CPU, gloo)"))
EOF
) || fail environment "a package is missing (torch, transformers, peft, trl, accelerate, datasets, openai-harmony);
carry .wheelhouse/site.tar.gz (scripts/build_wheelhouse.sh)"
event environment ok 0 "$ENVIRONMENT NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE"

# ---------------------------------------------------------------- 1. model + rows
if ((CPU)); then
    MODEL=$WORKDIR/tiny-gpt-oss
    SEQ=128 WORDS=80 ROWS=48 BATCH=2 ACCUM=2 STEPS=4 SAVE=2 LORA_R=8
    timed build_model "$WORKDIR/build_model.log" "$PYTHON" "$REPO_ROOT/scripts/make_random_gpt_oss.py" \
        --output_dir "$MODEL" --tiny --layout bf16 || fail build_model "see $WORKDIR/build_model.log"
else
    MODEL=$WORKDIR/gpt-oss-${LAYERS}l-bf16
    # 1 GPU: 4 x 8 rows of 2048 tokens a step (65,536 tokens); 2 GPUs: 4 x 4 per GPU, the same global batch.
    SEQ=2048 WORDS=900 ROWS=256 BATCH=4 ACCUM=4 STEPS=6 SAVE=2 LORA_R=64
    timed build_model "$WORKDIR/build_model.log" "$PYTHON" "$REPO_ROOT/scripts/make_random_gpt_oss.py" \
        --output_dir "$MODEL" --layers "$LAYERS" --layout bf16 || fail build_model "see $WORKDIR/build_model.log"
fi
DATA=$WORKDIR/rows
rm -rf "$DATA"
timed data "$WORKDIR/data.log" "$PYTHON" -m pipeline_lib.multi_gpu data --out "$DATA" --rows "$ROWS" \
    --words "$WORDS" || fail data "see $WORKDIR/data.log"

PHASE1=("$REPO_ROOT/scripts/13_train_lang_adapter.py" --model_name_or_path "$MODEL" --train_data_path "$DATA"
    --max_seq_length "$SEQ" --per_device_train_batch_size "$BATCH" --max_steps "$STEPS" --num_train_epochs 1
    --lora_r "$LORA_R" --backend "$BACKEND" --packing false --report_to none --logging_steps 1 --seed 7)
# launcher CONFIG PORT: sets LAUNCH to a 2-process launcher, each run on its own port (a run killed with -9 may leave
# the previous port in use for a while). On CPU accelerate launch --cpu starts ONE process (its simple_launcher;
# multi-process CPU wants mpirun), so --cpu uses torchrun, which the Trainer's accelerate state reads the same way
# (gloo); the config file is then unused.
launcher() {
    if ((CPU)); then
        LAUNCH=("$PYTHON" -m torch.distributed.run --nproc_per_node 2 --master_addr 127.0.0.1 --master_port "$2")
    else
        LAUNCH=("$PYTHON" -m accelerate.commands.launch --num_processes 2 --main_process_port "$2"
            --config_file "$REPO_ROOT/configs/accelerate/$1")
    fi
}
rm -rf "$WORKDIR/one" "$WORKDIR/two" "$WORKDIR/fsdp"

# ---------------------------------------------------------------- 2. DDP scaling: 1 GPU, then 2 GPUs
one_rc=0 two_rc=0
CUDA_ONE=$( ((CPU)) && echo "" || echo 0)
if ((FSDP_ONLY)); then
    event phase1_1gpu "skipped (--fsdp-only)" 0
    event phase1_2gpu_ddp "skipped (--fsdp-only)" 0
else
    timed phase1_1gpu "$WORKDIR/one.log" env CUDA_VISIBLE_DEVICES="$CUDA_ONE" "$PYTHON" "${PHASE1[@]}" \
        --gradient_accumulation_steps $((2 * ACCUM)) --save_steps 1000 --output_dir "$WORKDIR/one" || one_rc=$?
    launcher ddp.yaml 29511
    timed phase1_2gpu_ddp "$WORKDIR/two.log" "${LAUNCH[@]}" "${PHASE1[@]}" \
        --gradient_accumulation_steps "$ACCUM" --save_steps 1000 --output_dir "$WORKDIR/two" || two_rc=$?
fi

# ---------------------------------------------------------------- 3. FSDP2: kill -9 after the first checkpoint, rerun
FSDP=("${PHASE1[@]}" --gradient_accumulation_steps "$ACCUM" --save_steps "$SAVE" --output_dir "$WORKDIR/fsdp"
    --resume_from_checkpoint auto)
killed=""
if (($(left) > 60)); then
    t=$SECONDS
    launcher fsdp2.yaml 29521
    setsid "${LAUNCH[@]}" "${FSDP[@]}" >"$WORKDIR/fsdp_run1.log" 2>&1 &
    RUN1=$!
    while kill -0 "$RUN1" 2>/dev/null && (($(left) > 60)); do
        if compgen -G "$WORKDIR/fsdp/checkpoint-*/trainer_state.json" >/dev/null; then
            kill_tree KILL "$RUN1"
            killed=$(cd "$WORKDIR/fsdp" && ls -d checkpoint-* | tr '\n' ' ')
            break
        fi
        sleep 0.2
    done
    kill_tree KILL "$RUN1"
    run1_rc=0
    wait "$RUN1" 2>/dev/null || run1_rc=$?
    if [[ -n $killed ]]; then
        event fsdp2_run1 "killed -9" $((SECONDS - t)) "after it wrote: $killed"
    else
        event fsdp2_run1 "FAILED: no checkpoint before the kill (rc=$run1_rc)" $((SECONDS - t)) \
            "$(tail -n 3 "$WORKDIR/fsdp_run1.log" | tr '\n' ' ' | cut -c1-300)"
        tail -n 30 "$WORKDIR/fsdp_run1.log" >&2
    fi
    # a rank killed mid-collective can leave nothing behind on the GPUs, but give the driver a moment
    sleep 2
    launcher fsdp2.yaml 29531
    timed fsdp2_run2_resume "$WORKDIR/fsdp_run2.log" "${LAUNCH[@]}" "${FSDP[@]}" || true
else
    event fsdp2_run1 "not run (budget spent)" 0
fi

# ---------------------------------------------------------------- 4. report
report_rc=0
FLAGS="" VERDICT=()  # the switches this run was started with (the report's command line); --fsdp-only's verdict
((!CPU)) || FLAGS+=" --cpu"
((!FSDP_ONLY)) || { FLAGS+=" --fsdp-only"; VERDICT=(--fsdp-only); }
"$PYTHON" -m pipeline_lib.multi_gpu report --one "$WORKDIR/one" --two "$WORKDIR/two" --fsdp "$WORKDIR/fsdp" \
    --events "$EVENTS" --out "$OUT_DIR/multi_gpu_report" --killed-after "$killed" --environment "$ENVIRONMENT" \
    --command "bash scripts/gpu_multi_gpu.sh --layers $LAYERS --backend $BACKEND$FLAGS" \
    ${VERDICT[@]+"${VERDICT[@]}"} || report_rc=$?
mkdir -p "$OUT_DIR/logs"
for f in one two fsdp_run1 fsdp_run2 build_model data; do
    [[ ! -f $WORKDIR/$f.log ]] || tail -c 200000 "$WORKDIR/$f.log" >"$OUT_DIR/logs/$f.log"
done
for run in one two fsdp; do
    [[ ! -f $WORKDIR/$run/final/phase_metrics.json ]] || cp "$WORKDIR/$run/final/phase_metrics.json" \
        "$OUT_DIR/logs/${run}_phase_metrics.json"
done
if ((report_rc == 0 && one_rc == 0 && two_rc == 0)); then
    log "MULTI-GPU PASSED in $((SECONDS - T0)) s: $OUT_DIR/multi_gpu_report.md"
    exit 0
fi
log "MULTI-GPU FAILED (1 GPU rc=$one_rc, 2 GPUs rc=$two_rc, report rc=$report_rc) after $((SECONDS - T0)) s:" \
    "$OUT_DIR/multi_gpu_report.md"
exit 1
