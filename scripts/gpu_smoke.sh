#!/usr/bin/env bash
# First run on a new GPU box: the whole curriculum on a random-weight GPT-OSS with 2 real-shape layers, in the
# released checkpoint's file layout (MXFP4 experts), through the same code the 20B run uses: 16 minutes on an H200
# (run O, 2026-11-29, 969 s, kill -9 and resume included; docs/BENCHMARKS.md "Smoke run O").
#
#   bash scripts/gpu_smoke.sh [--workdir DIR] [--layers 2] [--layout mxfp4|bf16] [--wheelhouse DIR]
#                             [--budget SECONDS] [--kill-phase agent_sft|ipo|tool_calling_sft|none] [--cpu]
#                             [--continue] [--detach [--wait SECONDS]]
#
# 1. (--wheelhouse DIR, default .wheelhouse when it holds site.tar.gz and unsloth is not importable) unpacks
#    scripts/build_wheelhouse.sh's site.tar.gz onto PYTHONPATH: Unsloth, TRL, datasets, openai-harmony, the
#    llama-cpp-python bindings (CPU build) and llama.cpp's GGUF converter. Nothing is downloaded (HF_HUB_OFFLINE=1).
# 2. builds the model (scripts/make_random_gpt_oss.py: random bf16 on the GPU, saved with MXFP4 *_blocks/*_scales
#    and the released quantization_config) and prepares the bundled data/samples (--quick-test sizes).
# 3. runs scripts/run_tui_pipeline.sh --quick-test --batch-profile smoke --save-steps 2 with the default backends
#    and configs/gates_random_weights.yaml, and kill -9s its whole process group once --kill-phase (agent SFT)
#    has written its first checkpoint; after the checks below, the same command again must resume that phase and
#    finish IPO, GRPO (on mutation tasks made from the bundled corpus) and the export (HF + GGUF).
# 4. checks the tiny CPU model cannot make (python -m pipeline_lib.smoke checks): the MXFP4 folder loads exactly;
#    the tool-calling adapter's logits fingerprint (recorded by its training process) holds through plain PEFT
#    and fails with one expert LoRA tensor zeroed; the bf16 merge check fails with the expert deltas dropped (its
#    tolerance printed part by part).
# 5. prints per phase: status, wall time, first-step time, peak GPU memory; writes gpu_smoke_report.{md,json} and
#    the logs to $OUT (the device tool's return folder) or <workdir>/out.
# Every step is bounded by --budget (default 1500 s; --cpu 2400 s): past it the pipeline is stopped and the report
# says what did not run. Exit 0 only when the pipeline finished, every check passed and the report's verdict holds
# (pipeline_lib.smoke.verdict: every phase ended, the killed phase resumed, the HF export and the BF16 GGUF passed).
# --continue: the same --workdir again (e.g. a second device call when the first ran out of its 10 minutes):
#    reuses the unpacked packages, model, data, tasks and checks, skips the killed first run, and runs the pipeline
#    command once more (it resumes where the last call stopped), then the report over both calls.
# --detach: for a machine lent call by call (our device tool: 10 minutes a call, released ~30 s after one ends):
#    the first call copies the repo to <workdir>/detached/repo and starts this script from there in its own process
#    session (it outlives the call), then follows it for --wait seconds (default 570);
#    the same command again re-attaches and follows it, printing the steps and the phase log's tail; when it has
#    ended, prints its report, copies it to $OUT and exits with its status (3 = still running). On a fresh machine
#    (the warm one was released) the same command starts over. On your own GPU box use screen instead.
# --cpu: the same steps with the tiny GPT-OSS on CPU and the local venv (no wheelhouse): on the shared 2-core CPU
# box 10m36s (2026-11-29) to 36 min (load ~12, 2026-11-28).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORKDIR=${TMPDIR:-/tmp}/gpu_smoke
LAYERS=2
LAYOUT=mxfp4
WHEELHOUSE=""
BUDGET=""
KILL_PHASE=agent_sft
CPU=0
CONTINUE=0
DETACH=0
WAIT=570
WAIT_GIVEN=0
ARGS=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --detach) DETACH=1 ;;
        --wait) WAIT=${2:-}; WAIT_GIVEN=1; shift ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case $1 in
        --workdir) WORKDIR=$2; shift ;;
        --layers) LAYERS=$2; shift ;;
        --layout) LAYOUT=$2; shift ;;
        --wheelhouse) WHEELHOUSE=$2; shift ;;
        --budget) BUDGET=$2; shift ;;
        --kill-phase) KILL_PHASE=$2; shift ;;
        --cpu) CPU=1 ;;
        --continue) CONTINUE=1 ;;
        -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu_smoke.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $LAYERS =~ ^[1-9][0-9]*$ ]] || { echo "--layers must be a positive integer, got '$LAYERS'" >&2; exit 2; }
[[ $LAYOUT == mxfp4 || $LAYOUT == bf16 ]] || { echo "--layout must be mxfp4 or bf16, got '$LAYOUT'" >&2; exit 2; }
[[ $WAIT =~ ^[0-9]+$ ]] || { echo "--wait must be seconds, got '$WAIT'" >&2; exit 2; }
((DETACH || !WAIT_GIVEN)) || { echo "--wait only applies with --detach (it is how long a call follows the run)" >&2
    exit 2; }
# GPU: run L's 16 minutes on 2 layers plus margin (a device call of 10 minutes: --detach, or --budget 550
# and --continue); CPU: the tiny model's 36 minutes.
BUDGET=${BUDGET:-$( ((CPU)) && echo 2400 || echo 1500)}
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "--budget must be seconds, got '$BUDGET'" >&2; exit 2; }
case $KILL_PHASE in
    agent_sft | ipo | tool_calling_sft | none) ;;
    *) echo "--kill-phase must be agent_sft, ipo, tool_calling_sft or none, got '$KILL_PHASE'" >&2; exit 2 ;;
esac

T0=$SECONDS
mkdir -p "$WORKDIR"
WORKDIR=$(realpath "$WORKDIR")

if ((DETACH)); then
    D=$WORKDIR/detached
    mkdir -p "$D"
    if [[ -f $D/rc ]]; then
        echo "[smoke] the detached run has ended (exit $(cat "$D/rc"); remove $D to start a new one)"
    elif [[ -f $D/pid ]] && kill -0 "$(cat "$D/pid")" 2>/dev/null; then
        echo "[smoke] attaching to the detached run (pid $(cat "$D/pid"), log $D/log)"
    else
        # A copy of the repo: the device tool rewrites the working tree at every call, and the phases start new
        # Python processes that read it.
        rm -rf "$D/repo" && mkdir -p "$D/repo"
        tar -C "$REPO_ROOT" --exclude=./.git --exclude=./.cache --exclude=./.venv --exclude=./checkpoints \
            --exclude=./logs --exclude=./.wheelhouse/site --exclude=./.wheelhouse/wheels -cf - . |
            tar -xf - -C "$D/repo"
        # The session leader writes its own pid: where job control is on, setsid forks and $! is not the run.
        rm -f "$D/pid"
        OUT=$WORKDIR/out setsid bash -c 'd=$1; shift; echo $$ >"$d/pid"; bash "$0" "$@" >"$d/log" 2>&1
            echo $? >"$d/rc"' "$D/repo/scripts/gpu_smoke.sh" "$D" ${ARGS[@]+"${ARGS[@]}"} --workdir "$WORKDIR" \
            </dev/null >/dev/null 2>&1 &
        for _ in $(seq 50); do [[ -s $D/pid ]] && break; sleep 0.2; done
        [[ -s $D/pid ]] || { echo "[smoke] the detached run did not start (no $D/pid)" >&2; exit 1; }
        echo "[smoke] started detached (pid $(cat "$D/pid"), log $D/log); the same command again follows it"
    fi
    while [[ ! -f $D/rc ]] && ((SECONDS - T0 < WAIT)) && kill -0 "$(cat "$D/pid")" 2>/dev/null; do sleep 2; done
    grep -a '^\[smoke' "$D/log" 2>/dev/null | tail -n 40 || true
    newest=$(ls -t "$WORKDIR"/run*.out 2>/dev/null | head -n 1 || true)
    [[ -z $newest ]] || { echo "---- tail of $newest"; tail -c 3000 "$newest" | tr '\r' '\n' | tail -n 25; }
    if [[ -n ${OUT:-} && -d $WORKDIR/out ]]; then cp -r "$WORKDIR/out/." "$OUT/"; fi
    if [[ -f $D/rc ]]; then
        [[ ! -f $WORKDIR/out/gpu_smoke_report.md ]] || cat "$WORKDIR/out/gpu_smoke_report.md"
        exit "$(cat "$D/rc")"
    fi
    if ! kill -0 "$(cat "$D/pid")" 2>/dev/null; then
        echo "[smoke] the detached run died without an exit status (log $D/log)" >&2
        exit 1
    fi
    echo "[smoke] still running after ${WAIT}s of following; run the same command again"
    exit 3
fi
OUT_DIR=${OUT:-$WORKDIR/out}
mkdir -p "$OUT_DIR"
EVENTS=$WORKDIR/smoke_events.jsonl
((CONTINUE)) || : >"$EVENTS"
log() { printf '[smoke %s +%ds] %s\n' "$(date '+%H:%M:%S')" $((SECONDS - T0)) "$*" >&2; }
left() { echo $((BUDGET - (SECONDS - T0))); }
event() { # event STEP STATUS SECONDS NOTE
    "$PYTHON" -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "status": sys.argv[2],
        "seconds": int(sys.argv[3]), "note": sys.argv[4]}))' "$1" "$2" "$3" "${4:-}" >>"$EVENTS"
    log "$1: $2 ($3 s) ${4:-}"
}
# timed STEP CMD...: run with the budget left (minus 20 s for the report), record status and wall time.
timed() {
    local step=$1 t=$SECONDS rc=0 limit
    shift
    limit=$(($(left) - 20))
    if ((limit <= 0)); then
        event "$step" "not run (budget spent)" 0
        return 1
    fi
    timeout --signal=TERM --kill-after=10 "$limit" "$@" || rc=$?
    if ((rc == 0)); then event "$step" ok $((SECONDS - t)); else event "$step" "FAILED rc=$rc" $((SECONDS - t)); fi
    return "$rc"
}

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline PYTHONUNBUFFERED=1
export GPT_OSS_PIPELINE_CACHE=$WORKDIR/pipeline_cache # tokenizer/vocab and the GGUF converter (below)
export TUI_WORKSPACE=$WORKDIR/workspace               # the pipeline's HF/torch/compile caches and TMPDIR go here
mkdir -p "$TUI_WORKSPACE"
if ((CPU)); then
    export CUDA_VISIBLE_DEVICES=""
fi

# ---------------------------------------------------------------- 1. offline packages
if [[ -z $WHEELHOUSE && -f $REPO_ROOT/.wheelhouse/site.tar.gz ]] && ! "$PYTHON" -c "import unsloth" 2>/dev/null; then
    WHEELHOUSE=$REPO_ROOT/.wheelhouse
fi
if ((!CPU)) && [[ -n $WHEELHOUSE ]] && ((CONTINUE)) && [[ -d $WORKDIR/site/unsloth ]]; then
    export PYTHONPATH=$WORKDIR/site${PYTHONPATH:+:$PYTHONPATH}
elif ((!CPU)) && [[ -n $WHEELHOUSE ]]; then
    t=$SECONDS
    rm -rf "$WORKDIR/site" && mkdir -p "$WORKDIR/site"
    tar -xzf "$WHEELHOUSE/site.tar.gz" -C "$WORKDIR/site"
    export PYTHONPATH=$WORKDIR/site${PYTHONPATH:+:$PYTHONPATH}
    event wheelhouse ok $((SECONDS - t)) "$WHEELHOUSE/site.tar.gz -> $WORKDIR/site"
fi
CONVERTER=$GPT_OSS_PIPELINE_CACHE/llama-cpp-python-0.3.36/llama.cpp
for src in "$WORKDIR/site/llama_cpp_converter" "${WHEELHOUSE:-/nonexistent}/llama_cpp_converter"; do
    if [[ -f $src/convert_hf_to_gguf.py && ! -f $CONVERTER/convert_hf_to_gguf.py ]]; then
        mkdir -p "$(dirname "$CONVERTER")" && cp -r "$src" "$CONVERTER"
    fi
done
versions=$("$PYTHON" - <<'EOF' 2>&1 || true
import importlib.metadata, importlib.util
out = []
for name, dist in (("torch", "torch"), ("transformers", "transformers"), ("peft", "peft"), ("trl", "trl"),
                   ("datasets", "datasets"), ("unsloth", "unsloth"), ("llama_cpp", "llama_cpp_python")):
    if importlib.util.find_spec(name) is None:
        out.append(f"{name}=MISSING")
        continue
    try:
        out.append(f"{name}={importlib.metadata.version(dist)}")
    except importlib.metadata.PackageNotFoundError:
        out.append(f"{name}=present")
try:
    import llama_cpp  # loads libllama.so: a build this CPU cannot run fails here, not in the export
    out.append(f"libllama=ok({llama_cpp.llama_cpp._lib_base_name if hasattr(llama_cpp.llama_cpp, '_lib_base_name') else 'loaded'})")
except Exception as exc:
    out.append(f"libllama=ERROR({type(exc).__name__}: {str(exc)[:120]})")
import torch
out.append("cuda=" + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"))
print(" ".join(out))
EOF
)
event environment ok 0 "$versions"

# ---------------------------------------------------------------- 2. model + data
# reuse STEP: with --continue, a step whose output is there is not redone.
reuse() { ((CONTINUE)) && [[ -e $2 ]] && event "$1" "reused (--continue)" 0 "$2"; }
if ((CPU)); then
    MODEL=$WORKDIR/tiny-gpt-oss-$LAYOUT
    BUILD=(--tiny)
else
    MODEL=$WORKDIR/gpt-oss-${LAYERS}l-$LAYOUT
    BUILD=(--layers "$LAYERS")
fi
reuse build_model "$MODEL/config.json" ||
    timed build_model "$PYTHON" "$REPO_ROOT/scripts/make_random_gpt_oss.py" --output_dir "$MODEL" "${BUILD[@]}" \
        --layout "$LAYOUT"
PIPE_DIR=$WORKDIR/run
# DATA_DIR TOOL_DIR KILL_DIR GRPO_TASKS GRPO_LANGUAGE LOG_DIR STATE_DIR of the --quick-test run below
eval "$(cd "$REPO_ROOT" && "$PYTHON" -m pipeline_lib.smoke paths --workdir "$PIPE_DIR" --model "$MODEL" \
    --kill-phase "$KILL_PHASE")"
reuse data_prep "$DATA_DIR/prep_report.json" ||
    timed data_prep "$PYTHON" "$REPO_ROOT/scripts/tui_data_prep.py" --source local \
        --local-dir "$REPO_ROOT/data/samples" --quick-test --output-dir "$DATA_DIR" || true
# Phase 4's tasks: a few real mutants of the bundled Python corpus, their tests run in the sandbox (as --tiny does).
reuse grpo_tasks "$GRPO_TASKS" ||
    timed grpo_tasks "$PYTHON" "$REPO_ROOT/scripts/16_generate_mutations.py" --language "$GRPO_LANGUAGE" \
        --programs 5 --max-per-program 2 --output-dir "$(dirname "$GRPO_TASKS")" || true

GPU_CSV=""
if ((!CPU)) && command -v nvidia-smi >/dev/null; then
    GPU_CSV=$WORKDIR/gpu_memory.csv
    # only the GPU this run uses (the first of CUDA_VISIBLE_DEVICES): another job may hold the others
    SMI_GPU=${CUDA_VISIBLE_DEVICES:-0}
    nvidia-smi -i "${SMI_GPU%%,*}" --query-gpu=timestamp,memory.used --format=csv,noheader,nounits \
        -lms 1000 >"$GPU_CSV" 2>/dev/null &
    SAMPLER=$!
    trap 'kill "$SAMPLER" 2>/dev/null || true' EXIT
fi

# ---------------------------------------------------------------- 3. the pipeline, killed once
PIPELINE=(bash "$REPO_ROOT/scripts/run_tui_pipeline.sh" --model "$MODEL" --workdir "$PIPE_DIR" --skip-data
    --quick-test --batch-profile smoke --save-steps 2 --grpo-language "$GRPO_LANGUAGE"
    --gates-config "$REPO_ROOT/configs/gates_random_weights.yaml")
export PYTHON
run1_rc=0
if [[ $KILL_PHASE != none ]] && ((!CONTINUE)); then
    t=$SECONDS
    setsid "${PIPELINE[@]}" >"$WORKDIR/run1.out" 2>&1 &
    RUN1=$!
    killed=""
    while kill -0 "$RUN1" 2>/dev/null; do
        if compgen -G "$KILL_DIR/checkpoint-*/trainer_state.json" >/dev/null; then
            kill -9 -- -"$RUN1" 2>/dev/null || true
            killed=$(cd "$KILL_DIR" && ls -d checkpoint-* | tr '\n' ' ')
            break
        fi
        if (($(left) < 60)); then
            kill -TERM -- -"$RUN1" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    wait "$RUN1" 2>/dev/null || run1_rc=$?
    if [[ -n $killed ]]; then
        event pipeline_run1 "killed -9 in $KILL_PHASE" $((SECONDS - t)) "after it wrote: $killed"
    else
        event pipeline_run1 "not killed (rc=$run1_rc)" $((SECONDS - t)) "no $KILL_PHASE checkpoint was seen"
    fi
    tail -n 5 "$WORKDIR/run1.out"
fi

# ---------------------------------------------------------------- 4. checks the tiny model cannot make
checks_rc=0
if ((CONTINUE)) && [[ -f $WORKDIR/checks.json ]]; then
    event checks "reused (--continue)" 0 "$WORKDIR/checks.json"
    "$PYTHON" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["passed"] else 1)' \
        "$WORKDIR/checks.json" || checks_rc=1
elif [[ -f $TOOL_DIR/final/adapter_config.json ]]; then
    timed checks env PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pipeline_lib.smoke checks --model "$MODEL" --adapter "$TOOL_DIR/final" \
        --out "$WORKDIR/checks.json" || checks_rc=$?
else
    event checks "not run" 0 "no $TOOL_DIR/final (tool-calling SFT did not finish)"
    checks_rc=1
fi

# ---------------------------------------------------------------- 3b. the same command again: resume to the end
# In its own process group so that a budget stop also ends the phase process under it (timeout would only
# signal the orchestrator's bash).
run2_rc=0
t=$SECONDS
setsid "${PIPELINE[@]}" >"$WORKDIR/run2.out" 2>&1 &
RUN2=$!
while kill -0 "$RUN2" 2>/dev/null && (($(left) > 20)); do sleep 1; done
if kill -0 "$RUN2" 2>/dev/null; then
    kill -TERM -- -"$RUN2" 2>/dev/null || true
    sleep 5
    kill -KILL -- -"$RUN2" 2>/dev/null || true
fi
wait "$RUN2" 2>/dev/null || run2_rc=$?
if ((run2_rc == 0)); then
    event pipeline_run2 ok $((SECONDS - t)) "resumed and finished"
else
    event pipeline_run2 "FAILED rc=$run2_rc" $((SECONDS - t)) "$( (($(left) <= 20)) && echo 'stopped: budget spent')"
fi
tail -n 25 "$WORKDIR/run2.out"

# ---------------------------------------------------------------- 5. report
report=(--workdir "$PIPE_DIR" --model "$MODEL" --smoke-log "$EVENTS" --out "$OUT_DIR/gpu_smoke_report"
    --kill-phase "$KILL_PHASE")
[[ -z $GPU_CSV ]] || report+=(--gpu-csv "$GPU_CSV")
[[ ! -f $WORKDIR/checks.json ]] || report+=(--checks "$WORKDIR/checks.json")
report_rc=0
(cd "$REPO_ROOT" && "$PYTHON" -m pipeline_lib.smoke report "${report[@]}") || report_rc=$?
((report_rc == 0)) || log "report: rc=$report_rc (2: written, and its verdict failed)"
# Logs and small JSON only (the device tool returns a few MB): no weights, no tokenizer copies (27 MB each).
STATE_REL=${STATE_DIR#"$WORKDIR"/}
tar -czf "$OUT_DIR/gpu_smoke_logs.tar.gz" -C "$WORKDIR" --exclude='*.safetensors' --exclude='*.gguf' \
    --exclude='*.pt' --exclude='*.pth' --exclude='*.bin' --exclude='*.arrow' --exclude='tokenizer*.json' \
    --exclude='*.parquet' --exclude='*.jsonl.gz' \
    "$STATE_REL/logs" "$STATE_REL/checkpoints" smoke_events.jsonl run1.out run2.out \
    $( [[ -f $WORKDIR/checks.json ]] && echo checks.json) \
    $( [[ -n $GPU_CSV ]] && echo gpu_memory.csv) 2>/dev/null || true
if ((run2_rc == 0 && checks_rc == 0 && report_rc == 0)); then
    log "GPU SMOKE PASSED in $((SECONDS - T0)) s: report $OUT_DIR/gpu_smoke_report.md"
    exit 0
fi
log "GPU SMOKE FAILED (pipeline rerun rc=$run2_rc, checks rc=$checks_rc, report rc=$report_rc) after" \
    "$((SECONDS - T0)) s:" \
    "report $OUT_DIR/gpu_smoke_report.md"
exit 1
