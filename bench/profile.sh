#!/usr/bin/env bash
# Where watchpost's CPU goes above the bare poll, by source line: a frame-pointer build of watchpost and of the
# floor (examples/poll_floor.rs) run the gateway workload side by side (bench/peer_workload.sh), `perf record
# --call-graph fp` samples both over the same seconds, and bench/profile_lines.py resolves every frame with
# addr2line (inlined functions included) and prints watchpost's samples per 1,000 of the floor's: by thread, by
# the source line a sample is spent in, and inclusive by function. (The DWARF unwinder lost most of the ingest
# thread's stacks; perf's own symbol names are unreliable for inlined code: see docs/performance.md.)
#   bench/profile.sh [SECONDS=25] [TOP=30]
# Env: KEEP=1 keeps the recordings (the directory is printed; rerun bench/profile_lines.py on them, e.g. with
# THREAD=watchpost-inges for one thread), SRV_PY (python with pymodbus >= 3.10; default $WATCHPOST_TEST_PYTHON, else python3). Needs perf, binutils,
# mosquitto and victoria-metrics. Builds into $CARGO_TARGET_DIR/fp (or target/fp).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-25}; TOP=${2:-30}
FP=${CARGO_TARGET_DIR:-$(pwd)/target}/fp
CARGO_TARGET_DIR=$FP CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --locked --bin watchpost --example poll_floor >/dev/null
B=$FP/release/watchpost; FLOOR=$FP/release/examples/poll_floor
R=$(mktemp -d); [ -n "${KEEP:-}" ] || trap 'rm -rf "$R"' EXIT
OUT="$R/run" FLOOR="$FLOOR" SRV_PY=${SRV_PY:-${WATCHPOST_TEST_PYTHON:-python3}} \
  bash bench/peer_workload.sh "$B" 100 100 $((SECS + 12)) 3 >"$R/workload.txt" 2>&1 & W=$!
sleep 8
WP=$(pgrep -f "run --config $R/run/wp.toml" | head -1); FL=$(pgrep -f "^$FLOOR" | head -1)
[ -n "$WP" ] && [ -n "$FL" ] || { cat "$R/workload.txt"; echo "the workload did not start" >&2; exit 1; }
perf record -F 19999 -p "$WP" --call-graph fp -o "$R/wp.data" -- sleep "$SECS" >/dev/null 2>&1 &
perf record -F 19999 -p "$FL" --call-graph fp -o "$R/floor.data" -- sleep "$SECS" >/dev/null 2>&1 &
wait $W
grep -E "^(watchpost|floor):" "$R/workload.txt" || true
perf script -i "$R/wp.data" -F comm,tid,ip,sym >"$R/wp.txt" 2>/dev/null
perf script -i "$R/floor.data" -F comm,tid,ip,sym >"$R/floor.txt" 2>/dev/null
python3 bench/profile_lines.py "$R/wp.txt" "$B" "$R/floor.txt" "$TOP"
[ -z "${KEEP:-}" ] || echo "recordings kept in $R (binary $B)"
