#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 60) with cargo-fuzz (nightly, or RUSTC_BOOTSTRAP=1).
# FUZZ_SANITIZER=none (CI) builds without AddressSanitizer: faster to build and run; the crate has no unsafe code of
# its own, and what fuzzing finds here is panics, overflows and hangs.
# New inputs land in fuzz/corpus/<target>/; commit the interesting ones: tests/fuzz_corpus.rs replays them on stable.
#   fuzz/run.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config modbus_decode line_protocol store_codec shadow)
toolchain=()
# FUZZ_STABLE=1 (CI): the stable toolchain with RUSTC_BOOTSTRAP even where a nightly exists, so its build cache
# serves every run.
if [ -z "${FUZZ_STABLE:-}" ] && rustup toolchain list | grep -q nightly; then toolchain=(+nightly); else export RUSTC_BOOTSTRAP=1; fi
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    cargo "${toolchain[@]}" fuzz run -O --sanitizer "${FUZZ_SANITIZER:-address}" "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096
done
