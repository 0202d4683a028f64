#!/usr/bin/env bash
# CI check of the Debian package: builds it from the given binary, installs it with dpkg -i,
# checks what it installed (binary, man page, completions, conffile), runs `wsrelay check
# --offline` on the installed config (with a certificate put where it says) and
# `systemd-analyze verify` on the installed unit, then purges it.
# Usage: scripts/deb-check.sh [path-to-wsrelay-binary]   (default: target/debug/wsrelay)
set -euo pipefail
cd "$(dirname "$0")/.."
deb="$(bash scripts/package-deb.sh "${1:-target/debug/wsrelay}")"
echo "built $deb"
dpkg-deb --info "$deb" | sed -n 's/^ *\(Package\|Version\|Architecture\): /  \1: /p'
dpkg -i "$deb" >/dev/null
trap 'dpkg --purge wsrelay >/dev/null 2>&1 || true; rm -f /etc/wsrelay/tls.crt /etc/wsrelay/tls.key' EXIT
for f in /usr/bin/wsrelay /lib/systemd/system/wsrelay.service /etc/wsrelay/wsrelay.toml \
    /usr/share/man/man1/wsrelay.1.gz /usr/share/bash-completion/completions/wsrelay \
    /usr/share/zsh/vendor-completions/_wsrelay /usr/share/fish/vendor_completions.d/wsrelay.fish; do
    [ -s "$f" ] || { echo "missing after install: $f" >&2; exit 1; }
done
grep -qx /etc/wsrelay/wsrelay.toml /var/lib/dpkg/info/wsrelay.conffiles
/usr/bin/wsrelay --version
zcat /usr/share/man/man1/wsrelay.1.gz | grep -q '^\.TH wsrelay 1'
# The installed config names /etc/wsrelay/tls.crt and tls.key: an operator puts them there.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout /etc/wsrelay/tls.key -out /etc/wsrelay/tls.crt 2>/dev/null
/usr/bin/wsrelay check --offline --config /etc/wsrelay/wsrelay.toml
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify /lib/systemd/system/wsrelay.service
    echo "systemd-analyze verify (installed unit): ok"
else
    echo "systemd-analyze not found: installed unit not verified" >&2
fi
rm -f /etc/wsrelay/tls.crt /etc/wsrelay/tls.key
dpkg --purge wsrelay >/dev/null
[ ! -e /usr/bin/wsrelay ] || { echo "purge left /usr/bin/wsrelay" >&2; exit 1; }
echo "deb package: ok"
