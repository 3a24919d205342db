#!/usr/bin/env bash
# The embedded demo: synthetic Last.fm-format data -> dataset -> ALS model -> metrics.
# Usage: scripts/demo.sh [stop]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
DEMO_DIR="${DEMO_DIR:-artifacts/demo}"

if [[ "${1:-}" == "stop" ]]; then
  for pidfile in "$DEMO_DIR"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  echo "stopped"
  exit 0
fi

mkdir -p "$DEMO_DIR"
"$BIN/musicrec" data synth --out "$DEMO_DIR/raw"
"$BIN/musicrec" data prepare --source lastfm360k --input "$DEMO_DIR/raw" --out "$DEMO_DIR/dataset"
"$BIN/musicrec" train --data "$DEMO_DIR/dataset" --out "$DEMO_DIR/model"
"$BIN/musicrec" evaluate --data "$DEMO_DIR/dataset" --model "$DEMO_DIR/model" --baseline popularity --baseline random
