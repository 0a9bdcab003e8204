#!/usr/bin/env bash
# Start scripts/run_tui_pipeline.sh in a detached `screen` session named tui_training (writeup §2, §7), so training
# survives SSH disconnects. All flags pass through; all output goes to <workdir>/logs/tui_pipeline_<timestamp>.log.
#
#   bash scripts/start_tui_training.sh [run_tui_pipeline.sh flags]    # e.g. --quick-test, --batch-profile aggressive
#   screen -r tui_training                                           # reattach; Ctrl+A, D detaches
#
# Attaches right away when run from an interactive terminal. Installs screen with apt-get when it is missing.
set -euo pipefail

SESSION=tui_training
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for arg in "$@"; do # --help and --dry-run print and exit: no session needed
    case $arg in
        -h | --help | --dry-run) exec bash "$REPO_ROOT/scripts/run_tui_pipeline.sh" "$@" ;;
    esac
done

if ! command -v screen >/dev/null 2>&1; then
    echo "screen not found; installing it (apt-get) ..."
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
    if ! command -v apt-get >/dev/null 2>&1 ||
        ! { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq screen; } ||
        ! command -v screen >/dev/null 2>&1; then
        echo "ERROR: screen is not installed and could not be installed automatically (needs apt-get as root)." >&2
        echo "Install it (apt-get install screen) or run the pipeline directly: bash scripts/run_tui_pipeline.sh $*" >&2
        exit 1
    fi
fi

sessions=$(screen -ls 2>/dev/null || true) # screen -ls exits 1 even when it lists sessions
if grep -Eq "^[[:space:]]*[0-9]+\.${SESSION}[[:space:]]" <<<"$sessions"; then
    echo "ERROR: a '$SESSION' screen session is already running; attach with: screen -r $SESSION" >&2
    exit 1
fi

workdir=$REPO_ROOT # the pipeline's --workdir decides where the log goes
args=("$@")
for i in "${!args[@]}"; do
    case ${args[$i]} in
        --workdir) workdir=${args[$((i + 1))]:-$workdir} ;;
        --workdir=*) workdir=${args[$i]#*=} ;;
    esac
done
workdir=$(realpath -m "$workdir")
mkdir -p "$workdir/logs"
log_file=$workdir/logs/tui_pipeline_$(date +%Y%m%d_%H%M%S).log

# The pipeline tees everything into TUI_PIPELINE_LOG itself (under pipefail); the session stays open at the end
# so the last lines can be read after reattaching.
# Started from the caller's directory, so relative --workdir/--model/--gates-config mean what they meant here.
inner="cd $(printf '%q' "$PWD") && TUI_PIPELINE_LOG=$(printf '%q' "$log_file")"
inner+=" bash $(printf '%q' "$REPO_ROOT/scripts/run_tui_pipeline.sh")"
[[ $# -eq 0 ]] || inner+=" $(printf '%q ' "$@")"
inner+="; rc=\$?; echo \"Pipeline finished (exit \$rc). Press Enter to exit.\"; read -r _"
screen -dmS "$SESSION" bash -c "$inner"
echo "Started screen session '$SESSION'; log: $log_file"
echo "Reattach: screen -r $SESSION   Detach: Ctrl+A, D   Follow: tail -f $log_file"
if [[ -t 0 && -t 1 ]]; then
    exec screen -r "$SESSION"
fi
