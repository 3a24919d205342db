#!/usr/bin/env bash
# `musicrec tune` over every tunable kind on the default HetRec Last.fm-2K split, as a user runs it:
#   bash benchmarks/tune_kinds_lastfm2k.sh [PATH_TO_hetrec2011-lastfm-2k] [TRIALS]
# Prints each trial, the chosen config and its test NDCG@10 next to popularity's. Runs in a
# temporary directory with its own MLflow store; nothing in the project is touched.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${1:-$HERE/../shared/data/lastfm-2k}"
TRIALS="${2:-40}"
MUSICREC="${MUSICREC:-$HERE/.venv/bin/musicrec}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export MLFLOW_TRACKING_URI="sqlite:///$WORK/mlflow.db"
"$MUSICREC" data prepare --source hetrec2k --input "$DATA" --out "$WORK/dataset" >/dev/null
"$MUSICREC" tune --data "$WORK/dataset" --kinds als,ease,itemknn,rp3beta --trials "$TRIALS" \
    --out "$WORK/tune"
echo
cat "$WORK/tune/best.yaml"
