#!/usr/bin/env bash
# Experiments on HetRec Last.fm-2K, tracked in a throw-away MLflow store:
#   the reference grid, a 30-trial Optuna search, then default vs tuned config through the
#   registry gate, and the comparison reports (CSV, Markdown, PNG) for docs/experiments/.
# Usage: benchmarks/tracking_lastfm2k.sh [LASTFM_2K_DIR] [REPORT_DIR] [TRIALS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA_IN="${1:-$ROOT/../shared/data/lastfm-2k}"
REPORT_DIR="$(mkdir -p "${2:-$ROOT/docs/experiments}" && cd "${2:-$ROOT/docs/experiments}" && pwd)"
TRIALS="${3:-30}"
MUSICREC="${MUSICREC:-$ROOT/.venv/bin/musicrec}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export MLFLOW_TRACKING_URI="sqlite:///$WORK/mlflow.db" MUSICREC_MODEL_CACHE="$WORK/cache"

echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$MUSICREC" data prepare --source hetrec2k --input "$DATA_IN" --out lastfm-2k >/dev/null
"$MUSICREC" experiments grid --data lastfm-2k --config "$ROOT/configs/grid.yaml" --out grid
"$MUSICREC" tune --data lastfm-2k --trials "$TRIALS" --out tune
for name in default tuned; do
  config=(); [[ $name == tuned ]] && config=(--config tune/best.yaml)
  "$MUSICREC" train --data lastfm-2k --out "$name" "${config[@]}" 2>/dev/null
  "$MUSICREC" evaluate --data lastfm-2k --model "$name" | grep -E "ndcg@10"
  "$MUSICREC" promote --allow-refusal
done
"$MUSICREC" tracking models
"$MUSICREC" experiments report --experiment musicrec-grid --parent latest --out "$REPORT_DIR"
"$MUSICREC" experiments report --experiment musicrec-tune --metric val_ndcg_at_10 \
  --parent latest --out "$REPORT_DIR"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
