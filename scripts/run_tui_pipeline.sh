#!/usr/bin/env bash
# The TUI curriculum in one strict process (writeup §2): data prep -> tool-calling SFT -> merge -> agent SFT -> IPO
# -> GRPO -> export, with quality gates between phases (logs/quality_gates.json) and auto-resume: run the same
# command again after any interruption and finished work is skipped (its gate re-checked), an interrupted phase
# resumes from its newest valid checkpoint.
#
#   bash scripts/run_tui_pipeline.sh [--quick-test] [--skip-data] [--batch-profile aggressive|balanced|conservative]
#       [--model HUB_ID|DIR] [--tiny] [--workdir DIR] [--gates-config FILE] [--grpo-language LANG] [--save-steps N]
#       [--dry-run] [--card H100-80GB|H200|...] [--report-to tensorboard|wandb|none]
#
# Usually started through scripts/start_tui_training.sh (a detached `screen` session). `make demo` runs --tiny.
# Test-only overrides (never needed by users): TUI_SCRIPTS_DIR (folder of the phase scripts), TUI_WORKSPACE
# (instead of /workspace), TUI_PROC1_ENVIRON (instead of /proc/1/environ).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
SCRIPTS_DIR=${TUI_SCRIPTS_DIR:-$REPO_ROOT/scripts}
DEFAULT_MODEL=openai/gpt-oss-20b
SESSION_T0=$SECONDS

usage() {
    cat <<EOF
Usage: bash scripts/run_tui_pipeline.sh [options]

Runs data prep -> tool-calling SFT (LoRA r64) -> merge -> agent SFT (LoRA r128) -> IPO -> GRPO -> export.
Re-running skips finished phases (re-checking their gates) and resumes an interrupted one from its newest valid
checkpoint. A failed HARD gate stops the run with a non-zero exit; the last output line names gate, value, threshold.

Options:
  --quick-test            small data subsets, seq 4096, 50 steps per phase (writeup §6)
  --skip-data             use the prepared data in <workdir>/data/coding_tui (fails if incomplete)
  --batch-profile NAME    aggressive | balanced | conservative (default: balanced); smoke: a few steps per
                          phase for scripts/gpu_smoke.sh (not changed by --quick-test)
  --model HUB_ID|DIR      base model (default: $DEFAULT_MODEL); a DIR needs config.json (+ weights to train)
  --tiny                  the embedded tiny GPT-OSS (built into <workdir>/checkpoints/tiny-gpt-oss), the bundled
                          data/samples, the tiny batch profile and tiny gates, on CPU (what \`make demo\` runs)
  --workdir DIR           where data/, checkpoints/ and logs/ go (default: the repository)
  --gates-config FILE     gate thresholds (default: configs/gates.yaml)
  --grpo-language LANG    GRPO task file <workdir>/data/LANG/grpo/tasks.jsonl (default: rust; --tiny: python,
                          whose tasks it generates first); absent -> GRPO skipped
  --save-steps N          checkpoint every N optimizer steps (default: 250, writeup §4; 10 with --tiny)
  --card NAME             the GPU the time estimate is for (default: detected with nvidia-smi, else H100-80GB);
                          measured rows are in configs/throughput.yaml
  --report-to WHERE       live metrics of the training phases: tensorboard (default, logs/tensorboard/<phase>/),
                          wandb (offline unless WANDB_MODE says otherwise; needs 'pip install wandb'), none
  --dry-run               print the plan (skip/resume/fresh per phase, batch, LoRA trainable parameters, disk) and
                          the cost estimate (tokens, steps, time, GPU-hours per phase, from measured throughput)
  -h, --help              this help

Environment: PYTHON (default python3), HF_TOKEN / RUNPOD_SECRET_HF_TOKEN (else read from /proc/1/environ),
WANDB_MODE (default offline), LLAMA_CPP_DIR (a llama.cpp checkout for GGUF export). Caches go to /workspace when
it exists. Outputs: <workdir>/logs/{tui_pipeline_*.log,phase_*.log,quality_gates.json,summary.md,loss_curves.png}.
EOF
}

log() { printf '[%s] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*"; }
warn() { log "WARNING: $*"; }
FAIL_MSG=""
die() {
    FAIL_MSG="ERROR: $*"
    log "ERROR: $*"
    exit 1
}
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# ---------------------------------------------------------------- arguments

QUICK_TEST=0
SKIP_DATA=0
PROFILE=balanced
MODEL=""
TINY=0
WORKDIR=$REPO_ROOT
GATES_CONFIG=$REPO_ROOT/configs/gates.yaml
GRPO_LANGUAGE=""
SAVE_STEPS=""
DRY_RUN=0
CARD=""
REPORT_TO=""
ORIG_ARGS=("$@")

need_value() { [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick-test) QUICK_TEST=1 ;;
        --skip-data) SKIP_DATA=1 ;;
        --tiny) TINY=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --batch-profile) need_value "$@"; PROFILE=$2; shift ;;
        --model) need_value "$@"; MODEL=$2; shift ;;
        --workdir) need_value "$@"; WORKDIR=$2; shift ;;
        --gates-config) need_value "$@"; GATES_CONFIG=$2; shift ;;
        --grpo-language) need_value "$@"; GRPO_LANGUAGE=$2; shift ;;
        --save-steps) need_value "$@"; SAVE_STEPS=$2; shift ;;
        --card) need_value "$@"; CARD=$2; shift ;;
        --report-to) need_value "$@"; REPORT_TO=$2; shift ;;
        --batch-profile=* | --model=* | --workdir=* | --gates-config=* | --grpo-language=* | --card=* | --report-to=* \
            | --save-steps=*)
            key=${1%%=*}; set -- "$key" "${1#*=}" "${@:2}"; continue ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

# --tiny runs GRPO on Python tasks it generates (python3 is on every machine the demo runs on); else writeup §10.
GRPO_LANGUAGE=${GRPO_LANGUAGE:-$( ((TINY)) && echo python || echo rust)}
case $PROFILE in
    aggressive | balanced | conservative | smoke) ;;
    *) die "--batch-profile must be aggressive, balanced, conservative or smoke; got '$PROFILE'" ;;
esac
[[ -z $SAVE_STEPS || $SAVE_STEPS =~ ^[1-9][0-9]*$ ]] || die "--save-steps must be a positive integer; got '$SAVE_STEPS'"
SAVE_FLAGS=() # an explicit --save-steps also reaches agent SFT, IPO, GRPO (else their configs' 250 / 25 / 25)
[[ -z $SAVE_STEPS ]] || SAVE_FLAGS=(--save_steps "$SAVE_STEPS")
[[ $GRPO_LANGUAGE =~ ^[a-z0-9_]+$ ]] || die "--grpo-language must be a lowercase name like rust; got '$GRPO_LANGUAGE'"
case $REPORT_TO in
    "" | tensorboard | none) ;;
    wandb) "${PYTHON:-python3}" -c "import wandb" 2>/dev/null ||
        die "--report-to wandb: the wandb package is not installed for ${PYTHON:-python3}; run: pip install wandb" ;;
    *) die "--report-to must be tensorboard, wandb or none; got '$REPORT_TO'" ;;
esac
[[ -f $GATES_CONFIG ]] || die "--gates-config: no such file '$GATES_CONFIG'"
GATES_CONFIG=$(realpath "$GATES_CONFIG")
WORKDIR=$(realpath -m "$WORKDIR")
if ((TINY)); then
    [[ -z $MODEL ]] || die "--tiny uses the embedded tiny GPT-OSS; drop --model '$MODEL'"
    MODEL=$WORKDIR/checkpoints/tiny-gpt-oss
    BATCH_PROFILE=tiny
    GATE_PROFILE=tiny
    SAVE_STEPS=${SAVE_STEPS:-10} # a checkpoint every 10 of the tiny profile's 40 tool-calling steps: resume is exercised
else
    MODEL=${MODEL:-$DEFAULT_MODEL}
    BATCH_PROFILE=$PROFILE
    GATE_PROFILE=default
    SAVE_STEPS=${SAVE_STEPS:-250} # writeup §4
fi
# A path-looking --model must exist; anything else is a hub id (org/name).
if [[ -d $MODEL ]]; then
    MODEL=$(realpath "$MODEL")
    MODEL_IS_LOCAL=1
elif [[ $MODEL == /* || $MODEL == .* || $MODEL == *//* ]] && ((!TINY)); then
    die "--model: no such folder '$MODEL'"
else
    MODEL_IS_LOCAL=$TINY
fi

export PYTHONPATH=$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 # phase output reaches the logs as it happens
out=$("$PYTHON" -m pipeline_lib.orchestrate paths --workdir "$WORKDIR" --model "$MODEL" \
    --grpo-language "$GRPO_LANGUAGE") || die "cannot compute paths (is '$PYTHON' the project's venv python?)"
eval "$out" # DATA_DIR CKPT_DIR LOG_DIR SLUG TOOL_DIR MERGED_DIR MERGED_HF AGENT_DIR IPO_DIR GRPO_DIR EXPORT_DIR ...

# ---------------------------------------------------------------- one log for the whole run

if ((!DRY_RUN)) && [[ -z ${_TUI_PIPELINE_CHILD:-} ]]; then
    mkdir -p "$LOG_DIR" "$CKPT_DIR"
    # Re-run this script with all output through tee; pipefail keeps the script's exit status. tee ignores
    # SIGINT/SIGTERM so the summary printed while the script stops still reaches the log.
    PIPELINE_LOG=${TUI_PIPELINE_LOG:-$LOG_DIR/tui_pipeline_$(date +%Y%m%d_%H%M%S).log}
    set +e
    _TUI_PIPELINE_CHILD=1 TUI_PIPELINE_LOG=$PIPELINE_LOG bash "${BASH_SOURCE[0]}" "${ORIG_ARGS[@]}" 2>&1 |
        (trap '' INT TERM; exec tee -a "$PIPELINE_LOG")
    exit "${PIPESTATUS[0]}"
fi
PIPELINE_LOG=${TUI_PIPELINE_LOG:-}

# ---------------------------------------------------------------- environment (writeup appendix)

export WANDB_MODE=${WANDB_MODE:-offline}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export TOKENIZERS_PARALLELISM=false
WORKSPACE=${TUI_WORKSPACE:-/workspace}
# Where `huggingface-cli login` saved a token before HF_HOME moves below (huggingface_hub's own default rule).
SAVED_TOKEN_FILES=("${HF_TOKEN_PATH:-}" "${HF_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/huggingface}/token"
    "$HOME/.cache/huggingface/token")
if [[ -d $WORKSPACE ]]; then # writeup §7/§10: the 20 GB container disk overflows otherwise
    export HF_HOME=$WORKSPACE/.cache/huggingface
    export TORCH_HOME=$WORKSPACE/.cache/torch
    export XDG_CACHE_HOME=$WORKSPACE/.cache
    export TMPDIR=$WORKSPACE/tmp TEMP=$WORKSPACE/tmp TMP=$WORKSPACE/tmp
    ((DRY_RUN)) || mkdir -p "$HF_HOME" "$TORCH_HOME" "$XDG_CACHE_HOME" "$TMPDIR"
fi
# Compile caches kept between phases and runs: an Unsloth phase's first step is 50-90 s of compilation on the H100
# and H200 (docs/BENCHMARKS.md). Inductor and Triton key their entries by content, so one cache serves every
# workdir (on /workspace when it exists); Unsloth writes generated modules per model type into
# UNSLOTH_COMPILE_LOCATION (unsloth_zoo/compiler.py; default ./unsloth_compiled_cache), kept per workdir.
COMPILE_CACHE=$WORKDIR/.cache
[[ ! -d $WORKSPACE ]] || COMPILE_CACHE=$WORKSPACE/.cache
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$COMPILE_CACHE/torchinductor}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$COMPILE_CACHE/triton}
export UNSLOTH_COMPILE_LOCATION=${UNSLOTH_COMPILE_LOCATION:-$WORKDIR/.cache/unsloth_compiled_cache}
if ((TINY)); then
    export CUDA_VISIBLE_DEVICES="" # the demo is the CPU path, also on a GPU machine
    export HF_HUB_OFFLINE=1        # nothing in a tiny run comes from the hub
fi

# HF_TOKEN: environment, else RunPod's secret name, else PID 1's environment (RunPod SSH sessions do not inherit
# it, writeup §7), else a token file saved by `huggingface-cli login` (its path is logged, never its content). It is then removed from this shell's environment and handed only to children that fetch from
# the hub: data prep with --source hub, and the phases given --model when it is a hub id (tool-calling SFT, merge,
# export). Agent SFT, IPO, GRPO, gates and the summary only read local folders and never see it.
HF_TOKEN_VALUE=""
HF_TOKEN_SOURCE=""
from_proc1() {
    local proc=${TUI_PROC1_ENVIRON:-/proc/1/environ}
    [[ -r $proc ]] || return 0
    { tr '\0' '\n' <"$proc" || true; } 2>/dev/null | sed -n "s/^$1=//p" | head -n 1
}
for source in HF_TOKEN RUNPOD_SECRET_HF_TOKEN; do
    if [[ -z $HF_TOKEN_VALUE && -n ${!source:-} ]]; then HF_TOKEN_VALUE=${!source} HF_TOKEN_SOURCE="\$$source"; fi
done
for source in HF_TOKEN RUNPOD_SECRET_HF_TOKEN; do
    if [[ -z $HF_TOKEN_VALUE ]]; then
        HF_TOKEN_VALUE=$(from_proc1 "$source" || true)
        [[ -z $HF_TOKEN_VALUE ]] || HF_TOKEN_SOURCE="$source in ${TUI_PROC1_ENVIRON:-/proc/1/environ}"
    fi
done
for file in "${SAVED_TOKEN_FILES[@]}" "${HF_HOME:+$HF_HOME/token}"; do # a login saved before or after the move
    if [[ -z $HF_TOKEN_VALUE && -n $file && -r $file ]]; then
        HF_TOKEN_VALUE=$(head -n 1 "$file" | tr -d '[:space:]')
        [[ -z $HF_TOKEN_VALUE ]] || HF_TOKEN_SOURCE="the token saved by huggingface-cli login in $file"
    fi
done
unset HF_TOKEN RUNPOD_SECRET_HF_TOKEN HUGGING_FACE_HUB_TOKEN
if [[ -z $HF_TOKEN_VALUE ]]; then
    TOKEN_BANNER="not set (gated datasets such as xLAM-60K are skipped)"
elif [[ $HF_TOKEN_VALUE == hf_* ]]; then
    TOKEN_BANNER="set (hf_****, from $HF_TOKEN_SOURCE)"
else
    TOKEN_BANNER="set (from $HF_TOKEN_SOURCE)"
fi
MODEL_TOKEN=no-token
((MODEL_IS_LOCAL)) || MODEL_TOKEN=with-token
DATA_TOKEN=with-token
((TINY)) && DATA_TOKEN=no-token

banner() {
    local quick=no
    ((QUICK_TEST)) && quick=yes
    log "================ TUI pipeline ================"
    log "model:          $MODEL ($( ((MODEL_IS_LOCAL)) && echo local folder || echo hub id))"
    log "batch profile:  $BATCH_PROFILE (quick test: $quick)   gates: $GATE_PROFILE ($GATES_CONFIG)"
    log "workdir:        $WORKDIR   (data: $DATA_DIR, checkpoints: $CKPT_DIR, logs: $LOG_DIR)"
    log "skip data:      $( ((SKIP_DATA)) && echo yes || echo no)   GRPO tasks: $GRPO_TASKS"
    log "python:         $(command -v "$PYTHON" || echo "$PYTHON")"
    log "WANDB_MODE=$WANDB_MODE  PYTORCH_CUDA_ALLOC_CONF=$PYTORCH_CUDA_ALLOC_CONF  TOKENIZERS_PARALLELISM=false"
    log "HF_HOME=${HF_HOME:-<default>}  TMPDIR=${TMPDIR:-<default>}"
    log "compile caches: TORCHINDUCTOR_CACHE_DIR=$TORCHINDUCTOR_CACHE_DIR TRITON_CACHE_DIR=$TRITON_CACHE_DIR" \
        "UNSLOTH_COMPILE_LOCATION=$UNSLOTH_COMPILE_LOCATION"
    log "HF_TOKEN:       $TOKEN_BANNER"
    [[ -z ${PIPELINE_LOG:-} ]] || log "log:            $PIPELINE_LOG"
    log "=============================================="
}

if ((DRY_RUN)); then
    banner
    plan_args=(--workdir "$WORKDIR" --model "$MODEL" --profile "$BATCH_PROFILE" --grpo-language "$GRPO_LANGUAGE")
    [[ -z $CARD ]] || plan_args+=(--card "$CARD")
    ((QUICK_TEST)) && plan_args+=(--quick-test)
    ((SKIP_DATA)) && plan_args+=(--skip-data)
    ((TINY)) && plan_args+=(--tiny --data-source "local samples $REPO_ROOT/data/samples")
    "$PYTHON" -m pipeline_lib.orchestrate plan "${plan_args[@]}"
    exit 0
fi

# One pipeline per workdir: the lock is held on fd 9 (inherited by the phase processes) until they all exit.
LOCK_FILE=$LOG_DIR/.pipeline.lock
exec 9<>"$LOCK_FILE"
if ! flock -n 9; then
    holder=$(tr -cd '0-9' <"$LOCK_FILE")
    die "another pipeline (pid ${holder:-unknown}) is running on $WORKDIR (lock $LOCK_FILE); attach with" \
        "'screen -r tui_training' or wait for it to finish"
fi
echo "$$" >"$LOCK_FILE"

# ---------------------------------------------------------------- phase plumbing

RUN_RECORD=$LOG_DIR/.run_phases.jsonl
: >"$RUN_RECORD"
CURRENT_PHASE=""
PHASE_T0=0
PHASE_STATUS=""

record_phase() { printf '{"phase": "%s", "status": "%s", "seconds": %d}\n' "$1" "$2" "$3" >>"$RUN_RECORD"; }

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CURRENT_PHASE ]]; then
        record_phase "$CURRENT_PHASE" failed $((SECONDS - PHASE_T0))
        log "===== END $CURRENT_PHASE (FAILED, elapsed $(fmt_secs $((SECONDS - PHASE_T0)))) ====="
    fi
    "$PYTHON" -m pipeline_lib.orchestrate summary --workdir "$WORKDIR" --model "$MODEL" \
        --grpo-language "$GRPO_LANGUAGE" || warn "summary report failed"
    if ((rc == 0)); then
        log "pipeline complete in $(fmt_secs $((SECONDS - SESSION_T0))): export $EXPORT_DIR, gates $GATES_FILE"
    else
        log "pipeline FAILED (exit $rc) after $(fmt_secs $((SECONDS - SESSION_T0))); rerun the same command to resume"
        [[ -z $FAIL_MSG ]] || printf '%s\n' "$FAIL_MSG"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'FAIL_MSG="ERROR: interrupted (SIGINT) during ${CURRENT_PHASE:-setup}"; exit 130' INT
trap 'FAIL_MSG="ERROR: terminated (SIGTERM) during ${CURRENT_PHASE:-setup}"; exit 143' TERM

run_phase() {
    CURRENT_PHASE=$1
    PHASE_T0=$SECONDS
    PHASE_STATUS=ran
    log "===== START $1 ====="
    progress_line "$1"
    "phase_$1"
    record_phase "$1" "$PHASE_STATUS" $((SECONDS - PHASE_T0))
    log "===== END $1 ($PHASE_STATUS, elapsed $(fmt_secs $((SECONDS - PHASE_T0)))) ====="
    CURRENT_PHASE=""
}

# Whole-run progress (pipeline_lib/live.py): the estimate is written at the start and again once data prep has
# measured the data; each phase start and every TUI_PROGRESS_INTERVAL seconds of training print a progress line.
RUN_ESTIMATE=$LOG_DIR/.run_estimate.json
export TUI_RUN_ESTIMATE=$RUN_ESTIMATE
write_estimate() {
    local args=(--workdir "$WORKDIR" --model "$MODEL" --profile "$BATCH_PROFILE" --grpo-language "$GRPO_LANGUAGE"
        --out "$RUN_ESTIMATE")
    ((QUICK_TEST)) && args+=(--quick-test)
    ((TINY)) && args+=(--tiny)
    [[ -z $CARD ]] || args+=(--card "$CARD")
    log "$("$PYTHON" -m pipeline_lib.orchestrate estimate "${args[@]}" 2>&1 | tail -n 1)" || true
}
progress_line() {
    log "$("$PYTHON" -m pipeline_lib.orchestrate progress --phase "$1" --estimate "$RUN_ESTIMATE" \
        --elapsed $((SECONDS - SESSION_T0)) 2>&1 | tail -n 1)" || true
}
REPORT_ARGS=()
[[ -z $REPORT_TO ]] || REPORT_ARGS=(--report_to "$REPORT_TO")

# run_cmd NAME with-token|no-token COMMAND...: output to the terminal, the run log and logs/phase_NAME.log.
run_cmd() {
    local name=$1 token=$2 rc=0
    shift 2
    local phase_log=$LOG_DIR/phase_$name.log
    log "run: $*"
    printf '\n===== %s: %s =====\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >>"$phase_log"
    if [[ $token == with-token && -n $HF_TOKEN_VALUE ]]; then
        (cd "$WORKDIR" && HF_TOKEN=$HF_TOKEN_VALUE "$@") 2>&1 | tee -a "$phase_log" || rc=$?
    else
        (cd "$WORKDIR" && "$@") 2>&1 | tee -a "$phase_log" || rc=$?
    fi
    ((rc == 0)) || die "$name: $(basename "$2") exited with status $rc (full output: $phase_log)"
}

# phase_state KIND DIR [--source S --quick-test]: sets ACTION (skip|resume|fresh), REASON, RESUME_FROM; warnings go to the log.
phase_state() {
    local out
    out=$("$PYTHON" -m pipeline_lib.orchestrate state "$@") || die "cannot inspect $2"
    eval "$out"
}

# load_batch PHASE: sets BATCH ACCUM SEQ MAX_STEPS from configs/batch_profiles.yaml.
load_batch() {
    local args=("$BATCH_PROFILE" "$1" --format shell) out
    ((QUICK_TEST)) && args+=(--quick-test)
    out=$("$PYTHON" -m pipeline_lib.profiles "${args[@]}") || die "cannot resolve batch profile $BATCH_PROFILE/$1"
    eval "$out"
    log "$1 batch: $BATCH x accum $ACCUM, seq $SEQ, max_steps $MAX_STEPS ($BATCH_PROFILE)"
}

preflight() { # preflight download|data|merge|export
    local out rc=0
    out=$("$PYTHON" -m pipeline_lib.orchestrate disk --stage "$1" --model "$MODEL" --workdir "$WORKDIR") || rc=$?
    ((rc == 0)) || die "$out"
    log "$out"
}

check_gate() { # check_gate PHASE DIR
    local out rc=0
    out=$("$PYTHON" -m pipeline_lib.gates check --phase "$1" --run-dir "$2" --gates-file "$GATES_FILE" \
        --profile "$GATE_PROFILE" --gates-config "$GATES_CONFIG" 2>&1) || rc=$?
    printf '%s\n' "$out"
    if ((rc != 0)); then
        log "Fix the cause, or remove $2 to redo the phase; rerunning as is re-checks the same saved result."
        FAIL_MSG=$(printf '%s\n' "$out" | tail -n 1)
        exit 1
    fi
}

# train_phase NAME RUN_DIR with-token|no-token none|download COMMAND...: skip / resume / fresh, then the gate.
train_phase() {
    local name=$1 run_dir=$2 token=$3 stage=$4
    shift 4
    local -x TENSORBOARD_LOGGING_DIR=$LOG_DIR/tensorboard/$name # live curves: tensorboard --logdir logs/tensorboard
    set -- "$@" "${REPORT_ARGS[@]}"
    phase_state training "$run_dir"
    case $ACTION in
        skip)
            PHASE_STATUS=skipped
            log "$name: skip - $REASON; re-checking its gate from the saved metrics"
            ;;
        resume)
            PHASE_STATUS=resumed
            log "$name: $REASON"
            [[ $stage == none ]] || preflight "$stage"
            run_cmd "$name" "$token" "$@" --resume_from_checkpoint "$RESUME_FROM"
            ;;
        fresh)
            log "$name: fresh start ($REASON)"
            [[ $stage == none ]] || preflight "$stage"
            run_cmd "$name" "$token" "$@"
            ;;
    esac
    check_gate "$name" "$run_dir"
}

# manifest_phase NAME STATE_DIR GATE_DIR TOKEN CMD...: merge and export. Skip when the saved manifest passed
# (orchestrate state NAME), else disk preflight for stage NAME and run; the gate is checked either way.
manifest_phase() {
    local name=$1 state_dir=$2 gate_dir=$3 token=$4
    shift 4
    phase_state "$name" "$state_dir"
    if [[ $ACTION == skip ]]; then
        PHASE_STATUS=skipped
        log "$name: skip - $REASON; re-checking its gate"
    else
        preflight "$name"
        run_cmd "$name" "$token" "$@"
    fi
    check_gate "$name" "$gate_dir"
}

# ---------------------------------------------------------------- phases (writeup order)

phase_data_prep() {
    local source=hub
    ((TINY)) && source=local
    local state_args=(--source "$source")
    ((QUICK_TEST)) && state_args+=(--quick-test)
    phase_state data "$DATA_DIR" "${state_args[@]}"
    if ((SKIP_DATA)); then
        [[ $ACTION == skip ]] || die "--skip-data, but $DATA_DIR is incomplete ($REASON); run without --skip-data"
        PHASE_STATUS=skipped
        log "--skip-data: using $DATA_DIR"
        return 0
    fi
    if [[ $ACTION == skip ]]; then
        PHASE_STATUS=skipped
        log "data prep: skip - $REASON"
        return 0
    fi
    local args=(--output-dir "$DATA_DIR")
    if ((TINY)); then
        args+=(--source local --local-dir "$REPO_ROOT/data/samples")
    else
        args+=(--source hub)
        preflight data
    fi
    ((QUICK_TEST)) && args+=(--quick-test)
    run_cmd data_prep "$DATA_TOKEN" "$PYTHON" "$SCRIPTS_DIR/tui_data_prep.py" "${args[@]}"
}

phase_tool_calling_sft() {
    local stage=none
    ((MODEL_IS_LOCAL)) || stage=download
    load_batch tool_calling_sft
    train_phase tool_calling_sft "$TOOL_DIR" "$MODEL_TOKEN" "$stage" \
        "$PYTHON" "$SCRIPTS_DIR/13_train_lang_adapter.py" --model_name_or_path "$MODEL" \
        --train_data_path "$DATA_DIR/tool_calling/train" --per_device_train_batch_size "$BATCH" \
        --gradient_accumulation_steps "$ACCUM" --max_steps "$MAX_STEPS" --num_train_epochs 1 \
        --output_dir "$TOOL_DIR" --save_steps "$SAVE_STEPS" --max_seq_length "$SEQ" --lora_r 64 --logging_steps 1
}

phase_merge() {
    manifest_phase merge "$MERGED_DIR" "$MERGED_HF" "$MODEL_TOKEN" "$PYTHON" "$SCRIPTS_DIR/19_merge_adapter.py" \
        --adapter_path "$TOOL_DIR/final" --base_model "$MODEL" --output_dir "$MERGED_DIR"
}

phase_agent_sft() {
    load_batch agent_sft
    train_phase agent_sft "$AGENT_DIR" no-token none \
        "$PYTHON" "$SCRIPTS_DIR/14_train_core_agent.py" --base_model "$MERGED_HF" --no-merge-lang-adapter \
        --train_data_path "$DATA_DIR/agent_traj/train" --per_device_train_batch_size "$BATCH" \
        --gradient_accumulation_steps "$ACCUM" --max_steps "$MAX_STEPS" --num_train_epochs 3 \
        --output_dir "$AGENT_DIR" --eval_strategy no --max_seq_length "$SEQ" --lora_r 128 "${SAVE_FLAGS[@]}"
}

phase_ipo() {
    load_batch ipo
    train_phase ipo "$IPO_DIR" no-token none \
        "$PYTHON" "$SCRIPTS_DIR/17_ipo_preference.py" --checkpoint "$AGENT_DIR/final" --base_model "$MERGED_HF" \
        --train_data_path "$DATA_DIR/preference/train" --per_device_train_batch_size "$BATCH" \
        --gradient_accumulation_steps "$ACCUM" --output_dir "$IPO_DIR" --beta 0.1 --max_steps "$MAX_STEPS" \
        --max_length "$SEQ" "${SAVE_FLAGS[@]}"
}

phase_grpo() {
    if ((TINY)) && [[ ! -f $GRPO_TASKS ]]; then # a few real mutation tasks (~10 s), so the demo runs Phase 4 too
        run_cmd grpo_tasks no-token "$PYTHON" "$REPO_ROOT/scripts/16_generate_mutations.py" \
            --language "$GRPO_LANGUAGE" --programs 5 --max-per-program 2 --output-dir "$(dirname "$GRPO_TASKS")"
    fi
    if [[ ! -f $GRPO_TASKS ]]; then # writeup §4: the TUI-only pipeline has no execution-reward tasks
        log "Skipping GRPO -- no task file $GRPO_TASKS; run language-specific training to generate task data."
        "$PYTHON" -m pipeline_lib.gates record --phase grpo --gates-file "$GATES_FILE" --status skipped_no_tasks
        PHASE_STATUS=skipped
        return 0
    fi
    if [[ ! -f $SCRIPTS_DIR/18_grpo_rl.py ]]; then
        warn "GRPO tasks exist at $GRPO_TASKS but $SCRIPTS_DIR/18_grpo_rl.py is not installed; skipping GRPO"
        "$PYTHON" -m pipeline_lib.gates record --phase grpo --gates-file "$GATES_FILE" --status skipped_no_script
        PHASE_STATUS=skipped
        return 0
    fi
    local policy=$IPO_DIR/final # the newest adapter: IPO's, else agent SFT's
    [[ -f $policy/adapter_config.json ]] || policy=$AGENT_DIR/final
    local tiny_args=()
    # The random tiny model earns reward 0 on every completion: with equal rewards in a group GRPO's advantage and
    # gradient are exactly 0, so TRL's entropy bonus is what moves the adapter (and the LoRA-update check can pass);
    # 16-token completions keep generation cheap on CPU.
    ((TINY)) && tiny_args=(--max_completion_length 16 --entropy_coef 0.01 --save_steps 2)
    load_batch grpo
    train_phase grpo "$GRPO_DIR" no-token none \
        "$PYTHON" "$SCRIPTS_DIR/18_grpo_rl.py" --checkpoint "$policy" --base_model "$MERGED_HF" \
        --task_source "$GRPO_TASKS" --language "$GRPO_LANGUAGE" --per_device_train_batch_size "$BATCH" \
        --gradient_accumulation_steps "$ACCUM" --max_steps "$MAX_STEPS" --output_dir "$GRPO_DIR" "${tiny_args[@]}" \
        "${SAVE_FLAGS[@]}"
}

phase_export() {
    local args=(--export --checkpoints_dir "$CKPT_DIR" --model "$MODEL" --merged_model "$MERGED_HF"
        --output_dir "$EXPORT_DIR")
    [[ -z ${LLAMA_CPP_DIR:-} ]] || args+=(--llama-cpp-dir "$LLAMA_CPP_DIR")
    manifest_phase export "$EXPORT_DIR" "$EXPORT_DIR" "$MODEL_TOKEN" "$PYTHON" "$SCRIPTS_DIR/19_merge_adapter.py" \
        "${args[@]}"
}

# Evaluation (SOFT, after every phase): the base model once and every trained stage on the held-out tasks of
# --grpo-language and Phase 0's held-out tool calls; the stage table goes into logs/summary.md and a stage scoring
# below the one before it warns. A crash here warns too: the trained adapters and the export are already saved.
evaluate_stages() {
    local args=(pipeline --workdir "$WORKDIR" --model "$MODEL" --language "$GRPO_LANGUAGE") rc=0
    # --tiny and --batch-profile smoke: 4 tasks x 48 tokens + 4 tool calls x 24 tokens per stage
    if ((TINY)) || [[ $BATCH_PROFILE == smoke ]]; then args+=(--quick); fi
    log "START evaluation"
    local t0=$SECONDS phase_log=$LOG_DIR/phase_evaluation.log
    printf '\n===== %s: evaluation =====\n' "$(date '+%Y-%m-%d %H:%M:%S')" >>"$phase_log"
    if [[ -n $HF_TOKEN_VALUE && $MODEL_TOKEN == with-token ]]; then # the base model may come from the hub
        (cd "$WORKDIR" && HF_TOKEN=$HF_TOKEN_VALUE "$PYTHON" -m pipeline_lib.evaluation "${args[@]}") 2>&1 |
            tee -a "$phase_log" || rc=$?
    else
        (cd "$WORKDIR" && "$PYTHON" -m pipeline_lib.evaluation "${args[@]}") 2>&1 | tee -a "$phase_log" || rc=$?
    fi
    ((rc == 0)) || warn "evaluation exited with status $rc (SOFT; full output: $phase_log)"
    log "END evaluation ($((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------- main

banner
if ((TINY)); then
    log "tiny model: $MODEL"
    run_cmd tiny_model no-token "$PYTHON" "$REPO_ROOT/scripts/make_tiny_gpt_oss.py" --output_dir "$MODEL"
fi
write_estimate
for phase in data_prep tool_calling_sft merge agent_sft ipo grpo export; do
    run_phase "$phase"
    [[ $phase != data_prep ]] || write_estimate # now from the prepared data's measured token counts
done
evaluate_stages
