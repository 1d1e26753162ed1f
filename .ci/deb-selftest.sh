#!/usr/bin/env bash
# CI's package self-test: build the .deb (scripts/package.sh), check its layout, modes and lintian, then install it
# on this throwaway machine as a user would: user and groups, config ownership, `check-config` on the default path,
# the packaged default running as the service user, reinstall keeping an edited conffile, remove keeping the buffer,
# purge removing it — which deletes /etc/watchpost and /var/lib/watchpost. So it refuses to run outside CI
# (CI=true) and on a machine where watchpost is installed by anything but an earlier run of itself. To get a .deb,
# use scripts/package.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=/var/cache/watchpost/.selftest-installed
[ "${CI:-}" = true ] || { echo "deb-selftest: CI only (it purges /etc/watchpost and /var/lib/watchpost); to build a .deb run scripts/package.sh" >&2; exit 1; }
if dpkg -s watchpost >/dev/null 2>&1 && [ ! -e "$MARK" ]; then
    echo "deb-selftest: watchpost is installed on this machine and not by this self-test; refusing to purge it" >&2
    exit 1
fi
DEB=$(bash scripts/package.sh | tail -1)
echo "built $DEB ($(stat -c %s "$DEB") bytes; binary $(dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/bin/watchpost | wc -c) bytes)"
fail() { echo "deb check FAILED: $*" >&2; exit 1; }

# A binary that needs GLIBC_ABI_DT_RELR (packed relocations, glibc 2.36) must not install over an older libc6.
BIN_TMP=$(mktemp); dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/bin/watchpost >"$BIN_TMP"
if readelf -V "$BIN_TMP" | grep -q GLIBC_ABI_DT_RELR; then
    dpkg-deb -f "$DEB" Depends | grep -qE 'libc6(:[a-z0-9]+)? \(>= 2\.(3[6-9]|[4-9][0-9])' ||
        fail "the binary needs glibc >= 2.36 (DT_RELR) but Depends says: $(dpkg-deb -f "$DEB" Depends)"
fi
rm -f "$BIN_TMP"

# Layout and modes.
list=$(dpkg-deb -c "$DEB")
for want in "-rwxr-xr-x .* ./usr/bin/watchpost" "-rw-r----- .* ./etc/watchpost/watchpost.toml" \
    "./usr/lib/systemd/system/watchpost.service" "./usr/lib/sysusers.d/watchpost.conf" \
    "./usr/lib/tmpfiles.d/watchpost.conf" "./usr/share/doc/watchpost/README.md" "./usr/share/doc/watchpost/copyright" \
    "./usr/share/doc/watchpost/examples/i2c_bme280_ads1115.toml" "./usr/share/man/man1/watchpost.1.gz" \
    "./usr/share/man/man1/watchpost-check-config.1.gz" "./usr/share/bash-completion/completions/watchpost" \
    "./usr/share/zsh/vendor-completions/_watchpost" "./usr/share/fish/vendor_completions.d/watchpost.fish" \
    "./usr/share/doc/watchpost/changelog.Debian.gz" "./usr/share/watchpost/config.schema.json"; do
    grep -qE -- "$want" <<<"$list" || fail "missing $want"
done
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
dpkg-deb -e "$DEB" "$T/ctl"
grep -qx /etc/watchpost/watchpost.toml "$T/ctl/conffiles" || fail "the config is not a conffile"
for s in postinst prerm postrm; do sh -n "$T/ctl/$s" || fail "$s does not parse"; done
# Lintian: no errors, no warnings (the two deliberate exceptions are overridden in debian/lintian/watchpost).
if command -v lintian >/dev/null; then
    lint=0; out=$(lintian --fail-on error,warning --tag-display-limit 0 "$DEB" 2>&1) || lint=$?
    [ "$lint" = 0 ] || { echo "$out"; fail "lintian"; }
fi

# Install, run, upgrade, remove, purge.
dpkg --purge watchpost >/dev/null 2>&1 || true
# From a clean state: a store that `watchpost run` as root left here (outside the package) would be root's, and
# the service user could not open it — under systemd StateDirectory= would fix the ownership, here nothing would.
rm -rf /var/lib/watchpost
mkdir -p "$(dirname "$MARK")" && touch "$MARK"
dpkg -i "$DEB" >/dev/null || fail "dpkg -i"
id -nG watchpost | grep -qw dialout || fail "watchpost is not in dialout"
id -nG watchpost | grep -qw i2c || fail "watchpost is not in i2c (the group must be created)"
[ "$(stat -c '%a %U:%G' /etc/watchpost/watchpost.toml)" = "640 root:watchpost" ] || fail "config mode/owner: $(stat -c '%a %U:%G' /etc/watchpost/watchpost.toml)"
[ "$(watchpost check-config)" = ok ] || fail "check-config on the default path"
runuser -u watchpost -- timeout -s TERM 3 watchpost run >"$T/run.log" 2>&1 || true
grep -q "watchpost started" "$T/run.log" || { cat "$T/run.log"; fail "the packaged default does not start as the service user"; }
[ -f /var/lib/watchpost/watchpost.db ] || fail "no store in /var/lib/watchpost"
echo '# edited' >> /etc/watchpost/watchpost.toml
dpkg -i --force-confold "$DEB" >/dev/null || fail "reinstall"
grep -q '# edited' /etc/watchpost/watchpost.toml || fail "an upgrade replaced the edited config"
dpkg -r watchpost >/dev/null || fail "remove"
[ -f /var/lib/watchpost/watchpost.db ] || fail "remove deleted the buffer (only purge may)"
dpkg --purge watchpost >/dev/null || fail "purge"
[ ! -e /var/lib/watchpost ] || fail "purge left /var/lib/watchpost"
rm -f "$MARK"
echo "deb check ok"
