#!/usr/bin/env bash
# Build watchpost for aarch64 (arm64 gateways: Raspberry Pi 4/5, i.MX8, RK35xx) on a Debian 12 x86-64 machine
# without Docker, with Debian's own Rust for the target, and run the unit tests under qemu-user:
#   sudo cross/aarch64.sh            # apt setup (once), release binary, unit tests under qemu, arm64 .deb
#   sudo cross/aarch64.sh package    # the release binary and the arm64 .deb, checked (what CI runs: the unit tests
#                                    # run under qemu-arm for the 32-bit target, cross/armv7.sh)
#   sudo cross/aarch64.sh build      # apt setup and the release binary only
# Output: $CARGO_TARGET_DIR (default target/)/aarch64-unknown-linux-gnu/release/watchpost and target/debian/*_arm64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
T=aarch64-unknown-linux-gnu
if ! dpkg -s libstd-rust-web-dev:arm64 >/dev/null 2>&1 || ! command -v qemu-aarch64-static >/dev/null; then
    dpkg --add-architecture arm64
    # A mirror mid-sync can fail one update (infra notes); try a few times before giving up.
    for try in 1 2 3; do apt-get update -qq && break; [ "$try" = 3 ] && exit 1; sleep 10; done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        rustc-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static libc6:arm64 >/dev/null
fi
# Debian's rustc (it has the arm64 std); cargo stays rustup's. Do not give qemu `-L /usr/aarch64-linux-gnu`: threaded
# programs hang with it; libc6:arm64 in /lib/aarch64-linux-gnu is what the binary finds.
export RUSTC=/usr/bin/rustc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
"$RUSTC" --version
cargo build --release --locked --target "$T"
BIN="${CARGO_TARGET_DIR:-target}/$T/release/watchpost"
echo "aarch64 binary: $BIN ($(stat -c %s "$BIN") bytes)"
qemu-aarch64-static "$BIN" --version
[ "${1:-}" = build ] && exit 0
if [ "${1:-}" != package ]; then
    # The unit tests (the integration tests need the x86 test servers and the host binary; they run natively).
    # No debug info: it is most of a test build's time and qemu does not need it.
    CARGO_PROFILE_DEV_DEBUG=0 cargo test --locked --target "$T" --lib
fi
TOOLS=/var/cache/watchpost/tools
export PATH="$TOOLS/bin:$PATH"
if command -v cargo-deb >/dev/null; then
    DEB=$(cargo deb --no-build --target "$T" 2>/dev/null | tail -1)
    bash cross/deb-check.sh "$DEB" arm64 AArch64 qemu-aarch64-static
fi
