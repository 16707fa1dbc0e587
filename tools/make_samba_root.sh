#!/bin/sh
# Build (once) the Debian 13 root the test suite starts Samba 4.22 from.
#
# Usage: tools/make_samba_root.sh [DIR]
# DIR defaults to $SMBLAYER_SAMBA_ROOT, else ~/.cache/smblayer/debian13-root
# (smblayer.testing looks in the same places).  Needs root and debootstrap.
# The mirror is the one apt is configured with (Debian's default otherwise).
# An existing complete root is kept; a half-built one is removed and rebuilt.
set -eu
dir=${1:-${SMBLAYER_SAMBA_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/smblayer/debian13-root}}
if [ -x "$dir/usr/sbin/smbd" ] && [ -f "$dir/.smblayer-complete" ]; then
    echo "Samba root ready: $dir"
    exit 0
fi
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\) *$/\1/p; s/^deb  *\(http[^ ]*debian\)  *[a-z].*/\1/p' \
         /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null | grep -v security | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
rm -rf "$dir.partial"
mkdir -p "$(dirname "$dir")"
echo "Building Samba root in $dir from $mirror (about a minute)"
debootstrap --variant=minbase --include=samba,smbclient trixie "$dir.partial" "$mirror"
# The chroot's services must not start anything on install or boot.
touch "$dir.partial/.smblayer-complete"
rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "Samba root ready: $dir"
