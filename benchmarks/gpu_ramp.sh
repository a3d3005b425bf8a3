#!/bin/bash
# Real-speech turns and a load ramp against `voice serve` on this machine, in one go: what the
# GPU figures in docs/benchmarks.md ("GPU: real turns and load ramp") were measured with.
#
#   CONFIG=voice.toml CLIPS=../shared/testdata/real OUT=results bash benchmarks/gpu_ramp.sh
#
# CONFIG must set port = 8811 and enough [limits] max_sessions for the largest level. Env:
# PER_LANG (real_turns clips per language, default 2; SKIP_REAL=1 skips them), LEVELS (load
# levels after the 1-session one, default "8 32 64"), PY (python, default python3).
set -u
T0=$(date +%s); log() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
PY=${PY:-python3}; CONFIG=${CONFIG:?a voice.toml with port = 8811}; CLIPS=${CLIPS:?clips folder}
PER_LANG=${PER_LANG:-2}; LEVELS=${LEVELS:-"8 32 64"}; OUT=${OUT:-results}; mkdir -p "$OUT"
$PY -m voice serve --config "$CONFIG" > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
for _ in $(seq 120); do
  curl -sf localhost:8811/readyz > /dev/null && break
  kill -0 $SERVER 2>/dev/null || break
  sleep 1
done
curl -sf localhost:8811/readyz || { log "server not ready"; tail -40 "$OUT/server.log"; exit 1; }
log "server ready"; grep -i "loaded\|warmed" "$OUT/server.log"
URL=ws://127.0.0.1:8811/v1/realtime
if [ -z "${SKIP_REAL:-}" ]; then
  timeout 300 $PY -m benchmarks.real_turns --url $URL --clips "$CLIPS" --per-language "$PER_LANG" \
    --json "$OUT/real_turns.json" 2>&1 | grep -v "^\s*$" | tail -40
  log "real turns done"
fi
timeout 150 $PY -m clients.latency --url $URL --sessions 1 --turns 4 --timeout-s 30 \
  --json "$OUT/ramp1.json" "$CLIPS"/*.wav 2>&1 | tail -14
for n in $LEVELS; do
  log "level $n"
  timeout 150 $PY -m clients.latency --url $URL --sessions "$n" --turns 2 --timeout-s 30 \
    --json "$OUT/ramp$n.json" "$CLIPS"/*.wav 2>&1 | grep -v "no reply:" | tail -14
done
curl -s localhost:8811/metrics | grep -E "^voice_engine" | grep -v "_bucket" > "$OUT/metrics.txt"
log "all done"
