#!/usr/bin/env bash
# Screenshots of the pages `letterpress serve` shows a reader, with headless
# Chromium at 375 px (phone) and 800 px (desktop) wide, into OUTDIR
# (default out/pages):
#
#   unsubscribe-*.png   GET /u/{token}: the page behind the unsubscribe link
#   unsubscribed-*.png  what POST /u/{token} answers (saved to a file first)
#   confirm-*.png       GET /confirm/{token}: the double opt-in page
#   confirmed-*.png     what POST /confirm/{token} answers
#   not-found-*.png     a link that does not verify
#
#   scripts/page-screenshots.sh [OUTDIR]
#
# Starts `serve` on a free port with a temporary SQLite database and the file
# transport, adds a subscriber, sends it the sample issue to get a real
# unsubscribe link, and signs up another address to get a confirmation link.
# The binary is $LETTERPRESS_BIN, else ${CARGO_TARGET_DIR:-target}/debug/letterpress.
#
# Needs Debian's `chromium`. When it is missing and we are root it is installed
# with apt-get; otherwise the script says why it did nothing and exits 0.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
outdir=$(mkdir -p "${1:-out/pages}" && cd "${1:-out/pages}" && pwd)
bin=${LETTERPRESS_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/letterpress}
if [ ! -x "$bin" ]; then
    echo "$0: no letterpress binary at $bin (run \`cargo build\` or set LETTERPRESS_BIN)" >&2
    exit 1
fi

# shellcheck source=scripts/chromium.sh
. "$(dirname "$0")/chromium.sh"

tmp=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# A throwaway installation: only the defaults and these variables count.
: >"$tmp/none.toml"
export LETTERPRESS_CONFIG=$tmp/none.toml
export LETTERPRESS_DATABASE__URL=sqlite://$tmp/lp.db
export LETTERPRESS_SERVER__SECRET=page-screenshots-$RANDOM-$RANDOM-0123456789abcdef
export LETTERPRESS_SERVER__BIND=127.0.0.1:0
export LETTERPRESS_SCHEDULE__CRON=""
export LETTERPRESS_DELIVERY__TRANSPORT=file
export LETTERPRESS_DELIVERY__OUTBOX_DIR=$tmp/outbox
export LETTERPRESS_CONTENT__ROOT=$repo/examples
export LETTERPRESS_CONTENT__TEMPLATE=$repo/templates/default.mjml
unset LETTERPRESS_LOG_FORMAT

"$bin" subscribers add reader@example.com --name Reader >/dev/null 2>&1
"$bin" send "$repo/examples/issue.md" --yes 2>/dev/null

# The unsubscribe token from the message's List-Unsubscribe header.
eml=$(find "$tmp/outbox" -name '*.eml' -not -path '*/confirmations/*' | head -n 1)
unsub=$(tr -d '\r' <"$eml" | sed -n 's/^List-Unsubscribe:.*\/u\/\([A-Za-z0-9_-]*\)>.*/\1/p' | head -n 1)
if [ -z "$unsub" ]; then
    echo "$0: no List-Unsubscribe token in $eml" >&2
    exit 1
fi

"$bin" serve 2>"$tmp/serve.log" &
server_pid=$!
addr=""
for _ in $(seq 1 300); do
    addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$tmp/serve.log" | head -n 1)
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "$0: serve did not start" >&2
    cat "$tmp/serve.log" >&2
    exit 1
fi
base=http://$addr

# POST BODY to PATH, the answer's HTML into FILE. curl when there is one,
# else bash's /dev/tcp (HTTP/1.0, so the server closes when done).
post() {
    local path=$1 body=$2 file=$3
    if command -v curl >/dev/null; then
        curl -fsS -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
            --data "$body" -o "$file" "$base$path"
    else
        local host=${addr%:*} port=${addr##*:}
        exec 3<>"/dev/tcp/$host/$port"
        printf 'POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s' \
            "$path" "$addr" "${#body}" "$body" >&3
        tr -d '\r' <&3 | sed '1,/^$/d' >"$file"
        exec 3<&-
    fi
}

shoot() {
    local name=$1 url=$2 width height
    for width in 375 800; do
        height=$([ "$width" = 375 ] && echo 740 || echo 600)
        "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
            --disable-background-networking --disable-component-update --disable-sync \
            --user-data-dir="$(mktemp -d -p "$tmp")" --hide-scrollbars \
            --window-size="$width,$height" --screenshot="$outdir/$name-$width.png" "$url" >/dev/null 2>&1
        echo "$outdir/$name-$width.png"
    done
}

shoot unsubscribe "$base/u/$unsub"
post "/u/$unsub" 'List-Unsubscribe=One-Click' "$outdir/unsubscribed.html"
shoot unsubscribed "file://$outdir/unsubscribed.html"

# A signup: its confirmation email lands in the outbox (file transport).
post /subscribe 'email=new.reader%40example.com&name=New+Reader' "$tmp/signup.html"
conf=$(find "$tmp/outbox/confirmations" -name '*.eml' | head -n 1)
# Undo quoted-printable soft line breaks before looking for the link.
confirm=$(tr -d '\r' <"$conf" | sed -e ':a' -e '/=$/{N;s/=\n//;ba' -e '}' |
    sed -n 's/.*\/confirm\/\([A-Za-z0-9_-]*\).*/\1/p' | head -n 1)
if [ -z "$confirm" ]; then
    echo "$0: no confirmation link in $conf" >&2
    exit 1
fi
shoot confirm "$base/confirm/$confirm"
post "/confirm/$confirm" '' "$outdir/confirmed.html"
shoot confirmed "file://$outdir/confirmed.html"
shoot not-found "$base/u/not-a-real-token"
