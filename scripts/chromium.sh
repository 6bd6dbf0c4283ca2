# Sourced by the screenshot scripts: sets $chromium to Debian's headless
# Chromium, installing it with apt-get when missing and we are root;
# otherwise says why nothing was done and exits 0 (screenshots are optional).
chromium=""
for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -x "$candidate" ]; then chromium=$candidate; break; fi
done
if [ -z "$chromium" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing chromium with apt-get…" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        chromium=/usr/bin/chromium
    else
        echo "skipped: chromium is not installed and we cannot install it (not root or no apt-get)" >&2
        exit 0
    fi
fi
