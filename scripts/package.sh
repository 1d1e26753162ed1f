#!/usr/bin/env bash
# Build the .deb for this machine or an ARM gateway and print where it landed. It only builds: nothing is
# installed, started or removed on this machine (the install/upgrade/purge round trip is CI's, .ci/deb-selftest.sh).
#   scripts/package.sh            # amd64: target/debian/watchpost_<version>_amd64.deb
#   scripts/package.sh arm64      # cross-built with Debian's rustc (root once, for apt: see cross/README.md)
#   scripts/package.sh armhf
# Needs cargo-deb (installed into ~/.cargo/bin on first use: `cargo install --locked cargo-deb`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/var/cache/watchpost/tools/bin:$HOME/.cargo/bin:$PATH"
command -v cargo-deb >/dev/null || cargo install -q --locked cargo-deb --version 3.8.0
case "${1:-amd64}" in
    amd64) cargo build -q --release --locked; target=() ;;
    arm64) bash cross/aarch64.sh build; target=(--target aarch64-unknown-linux-gnu) ;;
    armhf) bash cross/armv7.sh build; target=(--target armv7-unknown-linux-gnueabihf) ;;
    *) echo "usage: scripts/package.sh [amd64|arm64|armhf]" >&2; exit 1 ;;
esac
DEB=$(cargo deb --no-build "${target[@]}" 2>/dev/null | tail -1)
echo "$DEB"
