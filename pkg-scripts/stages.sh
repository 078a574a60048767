# Sourced by the training scripts (train-default.sh, train-baselines.sh): resumable stages of
# `atd train`, each writing its run folder under checkpoints/.
#   ATD_DATA      data pack folder (default ../shared/data)
#   CHECKPOINTS   run folders (default checkpoints/)
#   BACKEND       cpu or wgpu (default cpu; wgpu needs `cargo build --release -p atd-cli --features wgpu`)
#   STOP_AFTER    stop every stage cleanly after this many epochs of this invocation (resumable)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${CHECKPOINTS:-checkpoints}
BACKEND=${BACKEND:-cpu}
ATD=${ATD:-target/release/atd}
[ -x "$ATD" ] || cargo build --release -p atd-cli
mkdir -p "$RUNS"
RUN=(--resume --backend "$BACKEND")
[ -n "${STOP_AFTER:-}" ] && RUN+=(--stop-after "$STOP_AFTER")

# stage <run folder> <exported file> <atd train arguments...>: a stage is done when its
# exported weights exist; an interrupted one resumes its checkpoint.
stage() {
  local out=$1 file=$2
  shift 2
  if [ -f "$RUNS/$out/$file" ]; then
    echo "$RUNS/$out/$file exists: stage done"
    return
  fi
  "$ATD" train "$@" --out "$RUNS/$out" "${RUN[@]}"
  # Without STOP_AFTER a stage either finishes or fails; with it, stop here for the next run.
  [ -f "$RUNS/$out/$file" ] || { echo "$RUNS/$out stopped before its last epoch: rerun to continue"; exit 0; }
}
