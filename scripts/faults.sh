#!/usr/bin/env bash
# The long fault run: the CI fault test with more kill -9 rounds (default 100), then the fuzzers for a while.
#   scripts/faults.sh [ROUNDS] [FUZZ_SECONDS_PER_TARGET]
# Needs what `.ci/run` installs (mosquitto, victoria-metrics, pymodbus venv); fuzzing needs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-100}
fuzz_secs=${2:-300}
WATCHPOST_FAULT_ROUNDS=$rounds CI=true cargo test --release --test mqtt kill_9_at_random -- --nocapture
if command -v cargo-fuzz >/dev/null 2>&1; then
    fuzz/run.sh "$fuzz_secs"
else
    echo "cargo-fuzz not installed (cargo install cargo-fuzz); skipping fuzzing" >&2
fi
