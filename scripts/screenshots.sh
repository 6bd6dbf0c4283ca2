#!/usr/bin/env bash
# Renders an email's HTML with headless Chromium at 600 px (desktop client) and
# 375 px (phone) wide, in the light and the dark colour scheme
# (prefers-color-scheme), to OUTDIR/desktop-600.png, OUTDIR/phone-375.png,
# OUTDIR/desktop-600-dark.png and OUTDIR/phone-375-dark.png.
#
#   scripts/screenshots.sh ISSUE_HTML OUTDIR
#
# Needs Debian's `chromium`. When it is missing and we are root it is installed
# with apt-get; otherwise the script says why it did nothing and exits 0, so it
# never fails a build on a machine without a browser.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 ISSUE_HTML OUTDIR" >&2
    exit 2
fi
html=$1
outdir=$2
if [ ! -f "$html" ]; then
    echo "$0: $html: no such file" >&2
    exit 1
fi

# shellcheck source=scripts/chromium.sh
. "$(dirname "$0")/chromium.sh"

mkdir -p "$outdir"
url="file://$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

shoot() {
    # preferredColorScheme: 0 dark, 1 light (Blink's enum).
    local width=$1 file=$2 scheme=${3:-1}
    "$chromium" --headless --blink-settings=preferredColorScheme="$scheme" --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars --window-size="$width,${SCREENSHOT_HEIGHT:-2400}" \
        --screenshot="$file" "$url" >/dev/null 2>&1
    echo "$file"
}

shoot 600 "$outdir/desktop-600.png"
shoot 375 "$outdir/phone-375.png"
shoot 600 "$outdir/desktop-600-dark.png" 0
shoot 375 "$outdir/phone-375-dark.png" 0
