#!/usr/bin/env bash
# The TUI curriculum in one strict process (writeup §2): data prep -> tool-calling SFT -> merge -> agent SFT -> IPO
# -> GRPO -> export, with quality gates between phases (logs/quality_gates.json) and auto-resume: run the same
# command again after any interruption and finished work is skipped (its gate re-checked), an interrupted phase
# resumes from its newest valid checkpoint, and a phase whose inputs changed is redone with everything downstream.
#
#   bash scripts/run_tui_pipeline.sh [--quick-test] [--skip-data] [--batch-profile aggressive|balanced|conservative]
#       [--model HUB_ID|DIR] [--tiny] [--workdir DIR] [--gates-config FILE] [--configs-dir DIR]
#       [--grpo-language LANG] [--save-steps N] [--prune-stale] [--dry-run] [--card H100-80GB|H200|...] [--gpus N]
#       [--report-to tensorboard|wandb|none]
#
# The phases, their scripts, folders and order come from pipeline_lib/phases.py (through pipeline_lib.orchestrate);
# this script only runs what Python decides. Usually started through scripts/start_tui_training.sh (a detached
# `screen` session). `make demo` runs --tiny.
# Test-only overrides (never needed by users): TUI_SCRIPTS_DIR (folder of the phase scripts), TUI_WORKSPACE
# (instead of /workspace), TUI_PROC1_ENVIRON (instead of /proc/1/environ).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS_DIR=${TUI_SCRIPTS_DIR:-$REPO_ROOT/scripts}
DEFAULT_MODEL=openai/gpt-oss-20b
SESSION_T0=$SECONDS

usage() {
    cat <<EOF
Usage: bash scripts/run_tui_pipeline.sh [options]

Runs data prep -> tool-calling SFT -> merge -> agent SFT -> IPO -> GRPO -> export (pipeline_lib/phases.py).
Re-running skips finished phases (re-checking their gates), resumes an interrupted one from its newest valid
checkpoint, and redoes a phase whose inputs changed (config, data, upstream output, batch values) together with
everything downstream; the old output is kept as <dir>.stale-<time>. A failed HARD gate stops the run with a
non-zero exit; the last output line names gate, value, threshold.

Options:
  --quick-test            small data subsets, seq 4096, 50 steps per phase (writeup §6); its state lives in
                          <workdir>/quick-test/ and never satisfies (or is satisfied by) a production run
  --skip-data             use the data an earlier run prepared (fails if incomplete)
  --batch-profile NAME    aggressive | balanced | conservative (default: balanced); smoke: a few steps per
                          phase for scripts/gpu_smoke.sh (not changed by --quick-test)
  --model HUB_ID|DIR      base model (default: $DEFAULT_MODEL); a DIR needs config.json + weights
  --tiny                  the embedded tiny GPT-OSS (built into <workdir>/checkpoints/tiny-gpt-oss), the bundled
                          data/samples, the tiny batch profile and tiny gates, on CPU (what \`make demo\` runs)
  --workdir DIR           where data/, checkpoints/ and logs/ go (default: the repository)
  --gates-config FILE     gate thresholds (default: <configs-dir>/gates.yaml)
  --configs-dir DIR       the phase YAMLs and batch_profiles.yaml (default: configs/): every training setting
  --grpo-language LANG    GRPO task file <workdir>/data/LANG/grpo/tasks.jsonl (default: rust; --tiny: python,
                          whose tasks it generates first); absent -> GRPO skipped
  --gpus N                every training phase (tool-calling SFT, agent SFT, IPO, GRPO) runs as N data-parallel
                          processes (accelerate launch, DDP, configs/accelerate/ddp.yaml), accumulation divided by
                          N to keep the global batch; merge and export use one process (default: 1)
  --save-steps N          checkpoint every N optimizer steps in every training phase (default: each phase's
                          YAML, 250 / 25 for IPO; the tiny profile's 10 with --tiny)
  --prune-stale           delete the <dir>.stale-* folders earlier reruns set aside, then run
  --card NAME             the GPU the time estimate is for (default: detected with nvidia-smi, else H100-80GB);
                          measured rows are in configs/throughput.yaml
  --report-to WHERE       live metrics of the training phases: tensorboard (default, logs/tensorboard/<phase>/),
                          wandb (offline unless WANDB_MODE says otherwise; needs 'pip install wandb'), none
  --dry-run               print the plan (skip/resume/redo/fresh per phase and why, batch, LoRA trainable
                          parameters, disk) after checking every input, and the cost estimate (tokens, steps, time,
                          GPU-hours per phase, from measured throughput)
  -h, --help              this help

Environment: PYTHON (default: the repository's .venv/bin/python when it exists, else python3), HF_TOKEN /
RUNPOD_SECRET_HF_TOKEN (else read from /proc/1/environ or the token huggingface-cli login saved), WANDB_MODE
(default offline), LLAMA_CPP_DIR (a llama.cpp checkout for GGUF export). Caches go to /workspace when it exists.
Outputs: <workdir>/logs/{tui_pipeline_*.log,phase_*.log,quality_gates.json,summary.md,loss_curves.png}.
EOF
}

log() { printf '[%s] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*"; }
warn() { log "WARNING: $*"; }
FAIL_MSG=""
# What the last line of a failed run tells the user to do; only a failure a rerun can fix says "rerun".
FAIL_HINT="fix the cause above, then rerun the same command"
RERUN_HINT="rerun the same command to resume (finished phases are skipped)"
TRAPPED=0 # once the EXIT trap is set, on_exit prints the final lines
die() { # die MESSAGE [HINT]
    FAIL_MSG="ERROR: $1"
    FAIL_HINT=${2:-$FAIL_HINT}
    if ((TRAPPED)); then log "ERROR: $1"; else log "ERROR: $1 -- what to do: $FAIL_HINT"; fi
    exit 1
}
# The format of pipeline_lib.progress.fmt_duration (progress lines, estimates, summary): 12m03s, 9h12m.
fmt_secs() {
    if (($1 >= 3600)); then
        printf '%dh%02dm' $(($1 / 3600)) $(($1 % 3600 / 60))
    else
        printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
    fi
}

# ---------------------------------------------------------------- interpreter

# The repository's .venv (what `make install` / `make demo` build) unless PYTHON says otherwise.
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    [[ ! -x $REPO_ROOT/.venv/bin/python ]] || PYTHON=$REPO_ROOT/.venv/bin/python
fi
check_python() { # a missing module names the interpreter and the fix, before any phase starts
    local missing
    command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON: no such interpreter" \
        "run 'make install' (creates .venv) or set PYTHON to a python with the project installed"
    missing=$("$PYTHON" -c 'import importlib.util as u, sys
print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' \
        yaml torch transformers trl peft datasets safetensors openai_harmony) || missing="(the check itself failed)"
    [[ -z $missing ]] || die "$(command -v "$PYTHON") lacks module(s): $missing" \
        "run 'make install' in $REPO_ROOT (it builds .venv, used automatically), or '$PYTHON -m pip install -e \"$REPO_ROOT[gpt_oss,gguf]\"', or set PYTHON=/path/to/the/venv/bin/python"
}

# ---------------------------------------------------------------- arguments

QUICK_TEST=0
SKIP_DATA=0
PROFILE=balanced
MODEL=""
TINY=0
WORKDIR=$REPO_ROOT
CONFIGS_DIR=$REPO_ROOT/configs
GATES_CONFIG=""
GRPO_LANGUAGE=""
DRY_RUN=0
PRUNE_STALE=0
CARD=""
SAVE_STEPS=""
GPUS=1
REPORT_TO=""
ORIG_ARGS=("$@")
ARG_HINT="fix the command line (see --help) and run it again"

need_value() { [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value (see --help)" "$ARG_HINT"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick-test) QUICK_TEST=1 ;;
        --skip-data) SKIP_DATA=1 ;;
        --tiny) TINY=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --prune-stale) PRUNE_STALE=1 ;;
        --batch-profile) need_value "$@"; PROFILE=$2; shift ;;
        --model) need_value "$@"; MODEL=$2; shift ;;
        --workdir) need_value "$@"; WORKDIR=$2; shift ;;
        --gates-config) need_value "$@"; GATES_CONFIG=$2; shift ;;
        --configs-dir) need_value "$@"; CONFIGS_DIR=$2; shift ;;
        --grpo-language) need_value "$@"; GRPO_LANGUAGE=$2; shift ;;
        --card) need_value "$@"; CARD=$2; shift ;;
        --save-steps) need_value "$@"; SAVE_STEPS=$2; shift ;;
        --gpus) need_value "$@"; GPUS=$2; shift ;;
        --report-to) need_value "$@"; REPORT_TO=$2; shift ;;
        --batch-profile=* | --model=* | --workdir=* | --gates-config=* | --configs-dir=* | --grpo-language=* | \
            --card=* | --report-to=* | --save-steps=* | --gpus=*)
            key=${1%%=*}; set -- "$key" "${1#*=}" "${@:2}"; continue ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" "$ARG_HINT" ;;
    esac
    shift
done

# --tiny runs GRPO on Python tasks it generates (python3 is on every machine the demo runs on); else writeup §10.
GRPO_LANGUAGE=${GRPO_LANGUAGE:-$( ((TINY)) && echo python || echo rust)}
case $PROFILE in
    aggressive | balanced | conservative | smoke) ;;
    *) die "--batch-profile must be aggressive, balanced, conservative or smoke; got '$PROFILE'" "$ARG_HINT" ;;
esac
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus must be a positive integer; got '$GPUS'" "$ARG_HINT"
((GPUS == 1 || !TINY)) || die "--tiny is the one-process CPU demo; drop --gpus $GPUS" "$ARG_HINT"
[[ -z $SAVE_STEPS || $SAVE_STEPS =~ ^[1-9][0-9]*$ ]] ||
    die "--save-steps must be a positive integer; got '$SAVE_STEPS'" "$ARG_HINT"
[[ $GRPO_LANGUAGE =~ ^[a-z0-9_]+$ ]] ||
    die "--grpo-language must be a lowercase name like rust; got '$GRPO_LANGUAGE'" "$ARG_HINT"
case $REPORT_TO in
    "" | tensorboard | none | wandb) ;;
    *) die "--report-to must be tensorboard, wandb or none; got '$REPORT_TO'" "$ARG_HINT" ;;
esac
[[ -d $CONFIGS_DIR ]] || die "--configs-dir: no such folder '$CONFIGS_DIR'" "$ARG_HINT"
CONFIGS_DIR=$(realpath "$CONFIGS_DIR")
GATES_CONFIG=${GATES_CONFIG:-$CONFIGS_DIR/gates.yaml}
[[ -f $GATES_CONFIG ]] || die "--gates-config: no such file '$GATES_CONFIG'" "$ARG_HINT"
GATES_CONFIG=$(realpath "$GATES_CONFIG")
WORKDIR=$(realpath -m "$WORKDIR")
if ((TINY)); then
    [[ -z $MODEL ]] || die "--tiny uses the embedded tiny GPT-OSS; drop --model '$MODEL'" "$ARG_HINT"
    MODEL=$WORKDIR/checkpoints/tiny-gpt-oss
else
    MODEL=${MODEL:-$DEFAULT_MODEL}
fi
# A path-looking --model must exist; anything else is a hub id (org/name).
if [[ -d $MODEL ]]; then
    MODEL=$(realpath "$MODEL")
    MODEL_IS_LOCAL=1
elif [[ $MODEL == /* || $MODEL == .* || $MODEL == *//* ]] && ((!TINY)); then
    die "--model: no such folder '$MODEL'" "$ARG_HINT"
else
    MODEL_IS_LOCAL=$TINY
fi

check_python
if [[ $REPORT_TO == wandb ]]; then
    "$PYTHON" -c "import wandb" 2>/dev/null ||
        die "--report-to wandb: the wandb package is not installed for $PYTHON" "run: $PYTHON -m pip install wandb"
fi
export PYTHONPATH=$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 # phase output reaches the logs as it happens
# The run's context: every orchestrate call gets the same flags and decides from them.
CTX=(--workdir "$WORKDIR" --model "$MODEL" --batch-profile "$PROFILE" --grpo-language "$GRPO_LANGUAGE"
    --configs-dir "$CONFIGS_DIR" --scripts-dir "$SCRIPTS_DIR" --python "$PYTHON")
((QUICK_TEST)) && CTX+=(--quick-test)
((TINY)) && CTX+=(--tiny)
((SKIP_DATA)) && CTX+=(--skip-data)
[[ -z ${LLAMA_CPP_DIR:-} ]] || CTX+=(--llama-cpp-dir "$LLAMA_CPP_DIR")
[[ -z $REPORT_TO ]] || CTX+=(--report-to "$REPORT_TO")
[[ -z $SAVE_STEPS ]] || CTX+=(--save-steps "$SAVE_STEPS")
((GPUS == 1)) || CTX+=(--gpus "$GPUS")
CARD_ARGS=()
[[ -z $CARD ]] || CARD_ARGS=(--card "$CARD")
out=$("$PYTHON" -m pipeline_lib.orchestrate paths "${CTX[@]}") || die "cannot compute paths with $PYTHON"
eval "$out" # DATA_DIR CKPT_DIR LOG_DIR EXPORT_DIR GATES_FILE LOCK_FILE RUN_RECORD DECISIONS_FILE GRPO_TASKS PHASE_NAMES

# ---------------------------------------------------------------- one log for the whole run

if ((!DRY_RUN)) && [[ -z ${_TUI_PIPELINE_CHILD:-} ]]; then
    mkdir -p "$LOG_DIR" "$CKPT_DIR" "$(dirname "$LOCK_FILE")"
    # Re-run this script with all output through tee; pipefail keeps the script's exit status. tee ignores
    # SIGINT/SIGTERM so the summary printed while the script stops still reaches the log.
    PIPELINE_LOG=${TUI_PIPELINE_LOG:-$LOG_DIR/tui_pipeline_$(date +%Y%m%d_%H%M%S).log}
    set +e
    _TUI_PIPELINE_CHILD=1 TUI_PIPELINE_LOG=$PIPELINE_LOG PYTHON=$PYTHON bash "${BASH_SOURCE[0]}" "${ORIG_ARGS[@]}" \
        2>&1 | (trap '' INT TERM; exec tee -a "$PIPELINE_LOG")
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
# it, writeup §7), else a token file saved by `huggingface-cli login` (its path is logged, never its content). It is
# then removed from this shell's environment and handed only to children that fetch from the hub (orchestrate
# decides which: hub data prep, and the phases reading a hub --model).
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

banner() {
    local quick=no profile=$PROFILE gates=default
    ((QUICK_TEST)) && quick=yes
    ((TINY)) && profile=tiny gates=tiny
    log "================ TUI pipeline ================"
    log "model:          $MODEL ($( ((MODEL_IS_LOCAL)) && echo local folder || echo hub id))"
    log "batch profile:  $profile (quick test: $quick)   gates: $gates ($GATES_CONFIG)"
    log "configs:        $CONFIGS_DIR (every training setting; the pipeline passes paths and batch values)"
    log "workdir:        $WORKDIR   (data: $DATA_DIR, checkpoints: $CKPT_DIR, logs: $LOG_DIR)"
    log "skip data:      $( ((SKIP_DATA)) && echo yes || echo no)   GRPO language: $GRPO_LANGUAGE"
    log "python:         $(command -v "$PYTHON" || echo "$PYTHON")"
    log "WANDB_MODE=$WANDB_MODE  PYTORCH_CUDA_ALLOC_CONF=$PYTORCH_CUDA_ALLOC_CONF  TOKENIZERS_PARALLELISM=false"
    log "HF_HOME=${HF_HOME:-<default>}  TMPDIR=${TMPDIR:-<default>}"
    log "compile caches: TORCHINDUCTOR_CACHE_DIR=$TORCHINDUCTOR_CACHE_DIR TRITON_CACHE_DIR=$TRITON_CACHE_DIR" \
        "UNSLOTH_COMPILE_LOCATION=$UNSLOTH_COMPILE_LOCATION"
    log "HF_TOKEN:       $TOKEN_BANNER"
    [[ -z ${PIPELINE_LOG:-} ]] || log "log:            $PIPELINE_LOG"
    log "=============================================="
}

# Every input checked before any phase starts (a typo'd --gates-config, a --model folder without config.json, ...).
preflight_inputs() {
    local out rc=0 args=(--gates-config "$GATES_CONFIG")
    ((DRY_RUN)) && args+=(--dry-run)
    out=$("$PYTHON" -m pipeline_lib.orchestrate preflight "${CTX[@]}" "${args[@]}" 2>&1) || rc=$?
    if ((rc != 0)); then
        printf '%s\n' "$out" | while IFS= read -r line; do log "input problem: $line"; done
        local first count
        first=$(printf '%s\n' "$out" | head -n 1)
        count=$(printf '%s\n' "$out" | grep -c .)
        ((count <= 1)) || first+=" (and $((count - 1)) more input problem(s) above)"
        die "$first" "fix the input named above, then run the same command again"
    fi
}

if ((DRY_RUN)); then
    banner
    preflight_inputs
    "$PYTHON" -m pipeline_lib.orchestrate plan "${CTX[@]}" "${CARD_ARGS[@]}"
    exit 0
fi

# One pipeline per workdir: the lock is held on fd 9 (inherited by the phase processes) until they all exit.
exec 9<>"$LOCK_FILE"
if ! flock -n 9; then
    holder=$(tr -cd '0-9' <"$LOCK_FILE")
    die "another pipeline (pid ${holder:-unknown}) is running on $WORKDIR (lock $LOCK_FILE)" \
        "attach with 'screen -r tui_training' or wait for it to finish"
fi
echo "$$" >"$LOCK_FILE"

# ---------------------------------------------------------------- phase plumbing

: >"$RUN_RECORD"
: >"$DECISIONS_FILE"
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
    "$PYTHON" -m pipeline_lib.orchestrate summary "${CTX[@]}" || warn "summary report failed"
    if ((rc == 0)); then
        log "pipeline complete in $(fmt_secs $((SECONDS - SESSION_T0))): export $EXPORT_DIR, gates $GATES_FILE"
    else
        log "pipeline FAILED (exit $rc) after $(fmt_secs $((SECONDS - SESSION_T0)))"
        printf '%s -- what to do: %s\n' "${FAIL_MSG:-ERROR: exit status $rc}" "$FAIL_HINT"
    fi
    exit "$rc"
}
trap on_exit EXIT
TRAPPED=1
trap 'FAIL_MSG="ERROR: interrupted (SIGINT) during ${CURRENT_PHASE:-setup}"; FAIL_HINT=$RERUN_HINT; exit 130' INT
trap 'FAIL_MSG="ERROR: terminated (SIGTERM) during ${CURRENT_PHASE:-setup}"; FAIL_HINT=$RERUN_HINT; exit 143' TERM

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
    ((rc == 0)) || die "$name: $(basename "$2") exited with status $rc (full output: $phase_log)" \
        "read $phase_log; $RERUN_HINT once the cause is fixed (an out-of-memory or interrupted phase resumes)"
}

preflight_disk() { # preflight_disk data|download|merge|export
    local out rc=0
    out=$("$PYTHON" -m pipeline_lib.orchestrate disk --stage "$1" "${CTX[@]}") || rc=$?
    ((rc == 0)) || die "$out" "free disk space (or pass --prune-stale to delete set-aside stale folders), then rerun"
    log "$out"
}

check_gate() { # check_gate PHASE DIR
    local out rc=0 profile=default
    ((TINY)) && profile=tiny
    out=$("$PYTHON" -m pipeline_lib.gates check --phase "$1" --run-dir "$2" --gates-file "$GATES_FILE" \
        --profile "$profile" --gates-config "$GATES_CONFIG" 2>&1) || rc=$?
    printf '%s\n' "$out"
    if ((rc != 0)); then
        log "Fix the cause, or remove $2 to redo the phase; rerunning as is re-checks the same saved result."
        FAIL_MSG=$(printf '%s\n' "$out" | tail -n 1)
        FAIL_HINT="a rerun re-checks the same saved result: fix the cause or remove $2 first"
        exit 1
    fi
}

# Whole-run progress (pipeline_lib/live.py): the estimate is written at the start and again once data prep has
# measured the data; each phase start and every TUI_PROGRESS_INTERVAL seconds of training print a progress line.
export TUI_RUN_ESTIMATE=$RUN_ESTIMATE
write_estimate() {
    log "$("$PYTHON" -m pipeline_lib.orchestrate estimate "${CTX[@]}" "${CARD_ARGS[@]}" --out "$RUN_ESTIMATE" 2>&1 |
        tail -n 1)" || true
}
progress_line() {
    log "$("$PYTHON" -m pipeline_lib.orchestrate progress --phase "$1" --estimate "$RUN_ESTIMATE" \
        --elapsed $((SECONDS - SESSION_T0)) 2>&1 | tail -n 1)" || true
}

# run_phase PHASE: orchestrate decides (skip / resume / redo / fresh / absent) and gives the command; the gate is
# checked whether the phase ran or was skipped.
run_phase() {
    local name=$1 out
    CURRENT_PHASE=$name
    PHASE_T0=$SECONDS
    log "===== START $name ====="
    progress_line "$name"
    out=$("$PYTHON" -m pipeline_lib.orchestrate step "$name" "${CTX[@]}") || die "cannot decide $name"
    local ACTION REASON MOVED STATUS TOKEN STAGE GATE_DIR CMD
    eval "$out"
    case $ACTION in
        absent)
            PHASE_STATUS=skipped
            log "$name: skip - $REASON"
            "$PYTHON" -m pipeline_lib.gates record --phase "$name" --gates-file "$GATES_FILE" --status "$STATUS"
            GATE_DIR=""
            ;;
        missing) die "$REASON" "prepare the data first (run without --skip-data)" ;;
        skip)
            PHASE_STATUS=skipped
            log "$name: skip - $REASON; re-checking its gate from the saved outputs"
            ;;
        resume | fresh | redo)
            PHASE_STATUS=ran
            case $ACTION in
                resume) PHASE_STATUS=resumed; log "$name: $REASON" ;;
                fresh) log "$name: fresh start ($REASON)" ;;
                redo) PHASE_STATUS=redone
                    log "$name: redo - $REASON${MOVED:+ (old output moved to $MOVED)}" ;;
            esac
            [[ $STAGE == none ]] || preflight_disk "$STAGE"
            # live curves: tensorboard --logdir logs/tensorboard
            TENSORBOARD_LOGGING_DIR=$LOG_DIR/tensorboard/$name run_cmd "$name" "$TOKEN" "${CMD[@]}"
            "$PYTHON" -m pipeline_lib.orchestrate record "$name" "${CTX[@]}" >/dev/null ||
                die "$name finished but its input record could not be written"
            ;;
        *) die "orchestrate gave an unknown action '$ACTION' for $name" ;;
    esac
    [[ -z $GATE_DIR ]] || check_gate "$name" "$GATE_DIR"
    record_phase "$name" "$PHASE_STATUS" $((SECONDS - PHASE_T0))
    log "===== END $name ($PHASE_STATUS, elapsed $(fmt_secs $((SECONDS - PHASE_T0)))) ====="
    CURRENT_PHASE=""
}

# Evaluation (SOFT, after every phase): the base model once and every trained stage on the held-out tasks of
# --grpo-language and Phase 0's held-out tool calls; the stage table goes into logs/summary.md and a stage scoring
# below the one before it warns. A crash here warns too: the trained adapters and the export are already saved.
evaluate_stages() {
    local args=(pipeline --workdir "$WORKDIR" --model "$MODEL" --language "$GRPO_LANGUAGE") rc=0
    # --tiny and --batch-profile smoke: 4 tasks x 48 tokens + 4 tool calls x 24 tokens per stage
    if ((TINY)) || [[ $PROFILE == smoke ]]; then args+=(--quick); fi
    ((!QUICK_TEST)) || args+=(--quick-test) # the run's state is under <workdir>/quick-test/
    log "START evaluation"
    local t0=$SECONDS phase_log=$LOG_DIR/phase_evaluation.log
    printf '\n===== %s: evaluation =====\n' "$(date '+%Y-%m-%d %H:%M:%S')" >>"$phase_log"
    if [[ -n $HF_TOKEN_VALUE ]] && ((!MODEL_IS_LOCAL)); then # the base model may come from the hub
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
preflight_inputs
if ((PRUNE_STALE)); then
    "$PYTHON" -m pipeline_lib.orchestrate prune-stale "${CTX[@]}" | while IFS= read -r line; do log "$line"; done
fi
if ((TINY)); then
    log "tiny model: $MODEL"
    run_cmd tiny_model no-token "$PYTHON" "$REPO_ROOT/scripts/make_tiny_gpt_oss.py" --output_dir "$MODEL"
    if [[ ! -f $GRPO_TASKS ]]; then # a few real mutation tasks (~10 s), so the demo runs Phase 4 too
        run_cmd grpo_tasks no-token "$PYTHON" "$REPO_ROOT/scripts/16_generate_mutations.py" \
            --language "$GRPO_LANGUAGE" --programs 5 --max-per-program 2 --output-dir "$(dirname "$GRPO_TASKS")"
    fi
fi
write_estimate
first=1
for phase in $PHASE_NAMES; do
    run_phase "$phase"
    ((!first)) || write_estimate # after data prep: from the prepared data's measured token counts
    first=0
done
evaluate_stages
