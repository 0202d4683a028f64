#!/usr/bin/env bash
# Builds the Debian package of wsrelay with dpkg-deb (no extra tools):
#   /usr/bin/wsrelay                                   the binary given (default: a release build)
#   /lib/systemd/system/wsrelay.service                systemd/wsrelay.service, ExecStart=/usr/bin/wsrelay
#   /etc/wsrelay/wsrelay.toml                          examples/wsrelay.toml, a conffile
#   /usr/share/man/man1/wsrelay.1.gz                   `wsrelay man` (clap_mangen)
#   /usr/share/bash-completion/completions/wsrelay     `wsrelay completions bash|zsh|fish` (clap_complete)
#   /usr/share/zsh/vendor-completions/_wsrelay
#   /usr/share/fish/vendor_completions.d/wsrelay.fish
#   /usr/share/doc/wsrelay/{README.md,CHANGELOG.md,copyright}
# Usage: scripts/package-deb.sh [path-to-wsrelay-binary]   → target/debian/wsrelay_<version>_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-}"
if [ -z "$bin" ]; then
    cargo build --locked --release --bin wsrelay
    bin=target/release/wsrelay
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
root="target/debian/root"
rm -rf "$root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/wsrelay" \
    "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
    "$root/usr/share/doc/wsrelay"
install -m 0755 "$bin" "$root/usr/bin/wsrelay"
sed 's#/usr/local/bin/wsrelay#/usr/bin/wsrelay#g' systemd/wsrelay.service > "$root/lib/systemd/system/wsrelay.service"
chmod 0644 "$root/lib/systemd/system/wsrelay.service"
install -m 0644 examples/wsrelay.toml "$root/etc/wsrelay/wsrelay.toml"
"$bin" man | gzip -9n > "$root/usr/share/man/man1/wsrelay.1.gz"
"$bin" completions bash > "$root/usr/share/bash-completion/completions/wsrelay"
"$bin" completions zsh > "$root/usr/share/zsh/vendor-completions/_wsrelay"
"$bin" completions fish > "$root/usr/share/fish/vendor_completions.d/wsrelay.fish"
install -m 0644 README.md CHANGELOG.md "$root/usr/share/doc/wsrelay/"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/wsrelay/copyright"
echo "/etc/wsrelay/wsrelay.toml" > "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    packaging/debian/control > "$root/DEBIAN/control"
out="target/debian/wsrelay_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out"
