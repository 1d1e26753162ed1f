#!/usr/bin/env bash
# Check a cross-built .deb as if unpacked into a fresh root of its architecture: its Architecture field, the files
# and modes the amd64 package has, and a binary for the right machine that checks the packaged config under qemu.
#   cross/deb-check.sh DEB ARCH MACHINE QEMU...
#   e.g. cross/deb-check.sh target/debian/watchpost_0.1.0-1_arm64.deb arm64 AArch64 qemu-aarch64-static
set -euo pipefail
DEB=$1 ARCH=$2 MACHINE=$3
shift 3
# Read the whole header first: `dpkg-deb | grep -q` under pipefail fails when grep exits before dpkg-deb is done.
GOT=$(dpkg-deb -f "$DEB" Architecture)
[ "$GOT" = "$ARCH" ] || { echo "not an $ARCH package: $DEB (Architecture: $GOT)" >&2; exit 1; }
echo "$ARCH package: $DEB ($(stat -c %s "$DEB") bytes)"
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
dpkg-deb -x "$DEB" "$R"
for f in usr/bin/watchpost etc/watchpost/watchpost.toml usr/lib/systemd/system/watchpost.service \
    usr/lib/sysusers.d/watchpost.conf usr/lib/tmpfiles.d/watchpost.conf usr/share/man/man1/watchpost.1.gz \
    usr/share/watchpost/config.schema.json; do
    [ -e "$R/$f" ] || { echo "$ARCH package lacks /$f" >&2; exit 1; }
done
if readelf -V "$R/usr/bin/watchpost" | grep -q GLIBC_ABI_DT_RELR; then
    dpkg-deb -f "$DEB" Depends | grep -qE 'libc6(:[a-z0-9]+)? \(>= 2\.(3[6-9]|[4-9][0-9])' ||
        { echo "$ARCH package: the binary needs glibc >= 2.36 (DT_RELR), Depends does not say so" >&2; exit 1; }
fi
[ "$(stat -c %a "$R/etc/watchpost/watchpost.toml")" = 640 ] || { echo "$ARCH package: config mode" >&2; exit 1; }
M=$(readelf -h "$R/usr/bin/watchpost" | awk -F': +' '/^ *Machine:/ {print $2}')
[ "$M" = "$MACHINE" ] || { echo "$ARCH package: a binary for $M, not $MACHINE" >&2; exit 1; }
[ "$("$@" "$R/usr/bin/watchpost" check-config "$R/etc/watchpost/watchpost.toml")" = ok ] ||
    { echo "$ARCH package: the packaged config does not check" >&2; exit 1; }
echo "$ARCH package unpacked and checked"
