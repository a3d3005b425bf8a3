#!/bin/bash
# Real-speech turns on one machine against several servers in one sitting: a previous checkout
# ("before") and this one, at semantic_vad eagerness auto and high. What the GPU figures in
# docs/benchmarks.md ("GPU: first audio ready at the end of the turn") were measured with.
#
#   CONFIG=gpu.toml CLIPS=../shared/testdata/real BEFORE=../before OUT=results \
#       bash benchmarks/gpu_turns.sh [RUN...]
#
# RUNs (default: "before:auto after:auto after:high"): which checkout (before = $BEFORE, after
# = this one) at which eagerness. CONFIG must set port = 8811 and have no [vad] table (the
# script adds it). Env: PER_LANG (clips per language, default 2), PY (python, default python3).
# faster-whisper's beam 5 reference runs with the first RUN only.
set -u
T0=$(date +%s); log() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
PY=${PY:-python3}; CONFIG=${CONFIG:?a voice.toml with port = 8811}; CLIPS=${CLIPS:?clips}
PER_LANG=${PER_LANG:-2}; OUT=${OUT:-results}; mkdir -p "$OUT"
HERE=$(pwd); CONFIG=$(realpath "$CONFIG"); CLIPS=$(realpath "$CLIPS")
RUNS=${*:-"before:auto after:auto after:high"}
REFERENCE=""
for run in $RUNS; do
  which=${run%%:*}; eagerness=${run##*:}; tag="$which-$eagerness"
  dir=$HERE; [ "$which" = before ] && dir=$(realpath "${BEFORE:?a previous checkout}")
  { cat "$CONFIG"; printf '\n[vad]\ntype = "semantic_vad"\neagerness = "%s"\n' "$eagerness"; } \
    > "$OUT/$tag.toml"
  (cd "$dir" && exec $PY -m voice serve --config "$(realpath "$OUT/$tag.toml")") \
    > "$OUT/server-$tag.log" 2>&1 &
  server=$!
  for _ in $(seq 120); do
    curl -sf localhost:8811/readyz > /dev/null && break
    kill -0 $server 2>/dev/null || break
    sleep 1
  done
  if ! curl -sf localhost:8811/readyz > /dev/null; then
    log "$tag: server not ready"; tail -30 "$OUT/server-$tag.log"; kill $server; continue
  fi
  log "$tag: server ready ($(grep -o 'warmed up.*' "$OUT/server-$tag.log"))"
  timeout 300 $PY -m benchmarks.real_turns --url ws://127.0.0.1:8811/v1/realtime \
    --clips "$CLIPS" --per-language "$PER_LANG" $REFERENCE --json "$OUT/real-$tag.json" 2>&1 \
    | grep -v "^\s*$" | grep -v "faster-whisper as shipped" | tail -16
  REFERENCE="--no-reference"
  kill $server; wait $server 2>/dev/null
  log "$tag: done"
done
