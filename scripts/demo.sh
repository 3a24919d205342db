#!/usr/bin/env bash
# The embedded demo: synthetic Last.fm-format data -> dataset -> ALS model -> metrics ->
# MLflow run + registry (champion alias) -> API and UI running in the background.
# Usage: scripts/demo.sh [stop]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
DEMO_DIR="${DEMO_DIR:-artifacts/demo}"
API_PORT="${API_PORT:-8000}"
UI_PORT="${UI_PORT:-8501}"
API_URL="http://127.0.0.1:${API_PORT}"
UI_URL="http://127.0.0.1:${UI_PORT}"

stop() {
  for pidfile in "$DEMO_DIR"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

wait_for() {  # wait_for URL SECONDS NAME LOG
  local deadline=$((SECONDS + $2))
  until "$BIN/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "$1" 2>/dev/null; do
    if (( SECONDS > deadline )); then
      echo "error: $3 did not come up at $1; last lines of $4:" >&2
      tail -n 20 "$4" >&2
      exit 1
    fi
    sleep 0.5
  done
}

if [[ "${1:-}" == "stop" ]]; then
  stop
  echo "stopped"
  exit 0
fi

stop
mkdir -p "$DEMO_DIR"
"$BIN/musicrec" data synth --out "$DEMO_DIR/raw"
"$BIN/musicrec" data prepare --source lastfm360k --input "$DEMO_DIR/raw" --out "$DEMO_DIR/dataset"
"$BIN/musicrec" train --data "$DEMO_DIR/dataset" --out "$DEMO_DIR/model"
"$BIN/musicrec" evaluate --data "$DEMO_DIR/dataset" --model "$DEMO_DIR/model" \
  --baseline popularity --baseline random
# The promotion gate: the first model becomes champion; later runs must beat it.
"$BIN/musicrec" promote --allow-refusal

MODEL_URI="models:/musicrec@champion"
# Listening events go to an embedded SQLite store next to the demo's other files.
export MUSICREC_EVENTS_URL="sqlite:///$(cd "$DEMO_DIR" && pwd)/events.db"
setsid nohup "$BIN/musicrec" serve --model "$MODEL_URI" --port "$API_PORT" \
  > "$DEMO_DIR/api.log" 2>&1 < /dev/null &
echo $! > "$DEMO_DIR/api.pid"
wait_for "$API_URL/ready" 120 "the API" "$DEMO_DIR/api.log"

# The live loop: a listener's new plays and a ban change their next recommendations.
"$BIN/musicrec" events demo --url "$API_URL"

setsid nohup "$BIN/musicrec" ui --api-url "$API_URL" --port "$UI_PORT" \
  > "$DEMO_DIR/ui.log" 2>&1 < /dev/null &
echo $! > "$DEMO_DIR/ui.pid"
wait_for "$UI_URL/_stcore/health" 120 "the UI" "$DEMO_DIR/ui.log"

cat <<MSG

musicrec demo is running ($MODEL_URI):
  API  $API_URL        (docs: $API_URL/docs, metrics: $API_URL/metrics)
  UI   $UI_URL
  MLflow UI: make mlflow-ui      Stop: make stop
Try: curl -s "$API_URL/moods" | head -c 300; echo   (more in docs/api.md)
Events: musicrec events demo --url $API_URL   ·   retrain with them:
  musicrec retrain --source lastfm360k --input $DEMO_DIR/raw --events-url $MUSICREC_EVENTS_URL
MSG
