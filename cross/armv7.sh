#!/usr/bin/env bash
# Build watchpost for armv7 (armhf gateways: Raspberry Pi 2/3 32-bit, BeagleBone, i.MX6) on a Debian 12 x86-64
# machine without Docker, with Debian's own rustc, and run the unit tests under qemu-user:
#   sudo cross/armv7.sh            # setup (once), release binary, unit tests under qemu, armhf .deb
#   sudo cross/armv7.sh build      # setup and the release binary only
# Debian's armhf security index fails to download on some mirrors (and then `apt-get update` fails for every
# architecture), so the armhf architecture is never added here: the Rust standard library for armhf, of exactly the
# version of the installed rustc-web, is fetched from the archive's pool as a file and unpacked beside the host's
# into a private sysroot. Only the cross gcc, the cross libc and qemu come from apt.
# Output: $CARGO_TARGET_DIR (default target/)/armv7-unknown-linux-gnueabihf/release/watchpost and an _armhf.deb.
set -euo pipefail
cd "$(dirname "$0")/.."
T=armv7-unknown-linux-gnueabihf
CACHE=/var/cache/watchpost/rust-armhf
if ! command -v arm-linux-gnueabihf-gcc >/dev/null || ! command -v qemu-arm-static >/dev/null || ! dpkg -s rustc-web >/dev/null 2>&1; then
    for try in 1 2 3; do apt-get update -qq && break; [ "$try" = 3 ] && exit 1; sleep 10; done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        rustc-web gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static curl ca-certificates >/dev/null
fi
V=$(dpkg-query -W -f='${Version}' rustc-web)
SYSROOT="$CACHE/$V/sysroot"
if [ ! -d "$SYSROOT/lib/rustlib/$T/lib" ]; then
    mkdir -p "$CACHE/$V"
    deb="libstd-rust-web-dev_${V//+/%2B}_armhf.deb"
    ok=
    for pool in debian-security/pool/updates/main debian/pool/main; do
        if curl -fsS -o "$CACHE/$V/std.deb" "http://deb.debian.org/$pool/r/rustc-web/$deb"; then ok=1; break; fi
    done
    [ -n "$ok" ] || { echo "no armhf standard library for rustc-web $V in the archive" >&2; exit 1; }
    dpkg-deb -x "$CACHE/$V/std.deb" "$CACHE/$V/root"
    mkdir -p "$SYSROOT/lib/rustlib"
    ln -sfn /usr/lib/rustlib/x86_64-unknown-linux-gnu "$SYSROOT/lib/rustlib/x86_64-unknown-linux-gnu"
    ln -sfn "$CACHE/$V/root/usr/lib/rustlib/$T" "$SYSROOT/lib/rustlib/$T"
fi
printf '#!/bin/sh\nexec /usr/bin/rustc --sysroot %s "$@"\n' "$SYSROOT" >"$CACHE/rustc"
chmod +x "$CACHE/rustc"
# qemu with the cross libc (the binary is dynamically linked against Debian armhf's glibc, like the .deb's).
export RUSTC="$CACHE/rustc" \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm-static -L /usr/arm-linux-gnueabihf" \
    CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
"$RUSTC" --version
cargo build --release --locked --target "$T"
BIN="${CARGO_TARGET_DIR:-target}/$T/release/watchpost"
echo "armv7 binary: $BIN ($(stat -c %s "$BIN") bytes)"
qemu-arm-static -L /usr/arm-linux-gnueabihf "$BIN" --version
[ "${1:-}" = build ] && exit 0
# No debug info: it is most of a test build's time and qemu does not need it.
CARGO_PROFILE_DEV_DEBUG=0 cargo test --locked --target "$T" --lib
TOOLS=/var/cache/watchpost/tools
export PATH="$TOOLS/bin:$PATH"
if command -v cargo-deb >/dev/null; then
    DEB=$(cargo deb --no-build --target "$T" 2>/dev/null | tail -1)
    bash cross/deb-check.sh "$DEB" armhf ARM qemu-arm-static -L /usr/arm-linux-gnueabihf
fi
