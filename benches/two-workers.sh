#!/usr/bin/env bash
# benches/two-workers.sh: one `letterpress worker` against two on one
# PostgreSQL, into one smtp-sink (issue #11: "two workers deliver each
# message exactly once and together at least as fast as one").
#
# For each case (1 worker, then 2) in a fresh database of its own:
#   1. `migrate`, `subscribers import` of N generated subscribers;
#   2. `send ISSUE --yes` at one message a second, stopped (SIGTERM) at its
#      "newly queued" line: the issue is published and its deliveries are
#      queued, the stopped send gives its leases back;
#   3. K `letterpress worker`s start at once; the time to drain is from
#      their start until every delivery is `sent` (polled in the database
#      every 100 ms), then they are stopped;
#   4. exactly once: every delivery has attempts = 1, delivery_attempts has
#      N rows, and the sink's dump file holds N messages (one `Message-ID:`
#      header each).
# Each worker has LP_BENCH_CONNECTIONS connections (two workers: twice as
# many in all). Speed is read from the ratio of the two drains in one run.
#
# Usage: TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#   LP_BENCH_N=20000 benches/two-workers.sh [path/to/letterpress]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
lp=${1:-$repo/target/release/letterpress}
n=${LP_BENCH_N:-20000}
conns=${LP_BENCH_CONNECTIONS:-8}
pg=${LP_BENCH_POSTGRES:-${TEST_DATABASE_URL:-}}
if [ -z "$pg" ]; then
    echo "skipped: set TEST_DATABASE_URL or LP_BENCH_POSTGRES to a PostgreSQL server"
    exit 0
fi
sink_bin=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
if [ ! -x "$sink_bin" ]; then
    echo "skipped: smtp-sink not found (apt-get install postfix)"
    exit 0
fi
[ -x "$lp" ] || { echo "no letterpress binary at $lp (cargo build --release -p letterpress)" >&2; exit 1; }
issue=$repo/../shared/corpus/seed-issue.md
root=$repo/../shared/corpus/rust-trends
if [ ! -f "$issue" ]; then
    issue=$repo/examples/issue.md
    root=$repo/examples
fi

work=$(mktemp -d /tmp/lp-two-workers.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${LP_BENCH_KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

declare -A drain
for k in 1 2; do
    dir=$work/w$k
    mkdir -p "$dir"
    chmod 777 "$dir"
    name="lp_two_workers_$$_$k"
    psql "$pg" -qAtc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    url="${pg%/*}/$name"
    port=$(free_port)
    "$sink_bin" -u nobody -D "$dir/dump" 127.0.0.1:"$port" 256 &
    sink=$!
    pids+=("$sink")
    : >"$dir/none.toml"
    # Called in a subshell: the subshell becomes letterpress (its pid is $!).
    run() {
        exec env \
            LETTERPRESS_DATABASE__URL="$url" \
            LETTERPRESS_SERVER__SECRET=lp-bench-secret-lp-bench-secret-lp-bench \
            LETTERPRESS_CONTENT__ROOT="$root" \
            LETTERPRESS_CONTENT__TEMPLATE="$repo/templates/default.mjml" \
            LETTERPRESS_DELIVERY__TRANSPORT=smtp \
            LETTERPRESS_DELIVERY__SMTP_URL="smtp://127.0.0.1:$port" \
            LETTERPRESS_DELIVERY__CONCURRENCY="$conns" \
            LETTERPRESS_DELIVERY__RETRY__INITIAL=1s \
            "$@"
    }
    {
        echo "email,name"
        for ((i = 0; i < n; i++)); do echo "reader$i@example.com,Reader $i"; done
    } >"$dir/subscribers.csv"
    (cd "$dir" && run env LETTERPRESS_DELIVERY__RATE_PER_SECOND=0 \
        "$lp" --config none.toml migrate >>letterpress.log 2>&1)
    (cd "$dir" && run env LETTERPRESS_DELIVERY__RATE_PER_SECOND=0 \
        "$lp" --config none.toml subscribers import subscribers.csv >>letterpress.log 2>&1)
    # Publish and queue, at one message a second, then stop the send.
    (cd "$dir" && run env LETTERPRESS_DELIVERY__RATE_PER_SECOND=1 \
        "$lp" --config none.toml send "$issue" --yes >send.log 2>&1) &
    send=$!
    until grep -q "newly queued" "$dir/send.log" 2>/dev/null; do
        kill -0 "$send" 2>/dev/null || { cat "$dir/send.log"; exit 1; }
        sleep 0.1
    done
    kill -TERM "$send" 2>/dev/null || true
    wait "$send" || true
    queued=$(psql "$url" -qAtc "SELECT count(*) FROM deliveries WHERE status = 'queued'")
    start=$(date +%s.%N)
    workers=()
    for ((w = 0; w < k; w++)); do
        (cd "$dir" && run env LETTERPRESS_DELIVERY__RATE_PER_SECOND=0 \
            "$lp" --config none.toml worker >"worker$w.log" 2>&1) &
        workers+=($!)
        pids+=($!)
    done
    deadline=$(($(date +%s) + 600))
    until [ "$(psql "$url" -qAtc "SELECT count(*) FROM deliveries WHERE status <> 'sent'")" = 0 ]; do
        [ "$(date +%s)" -lt $deadline ] || { echo "not drained in 600 s" >&2; exit 1; }
        sleep 0.1
    done
    end=$(date +%s.%N)
    for w in "${workers[@]}"; do kill -TERM "$w" 2>/dev/null || true; done
    for w in "${workers[@]}"; do wait "$w" || true; done
    kill "$sink" 2>/dev/null || true
    wait "$sink" 2>/dev/null || true
    attempts=$(psql "$url" -qAtc "SELECT count(*) FROM delivery_attempts")
    not_once=$(psql "$url" -qAtc "SELECT count(*) FROM deliveries WHERE attempts <> 1")
    received=$(grep -ci '^message-id:' "$dir/dump" || true)
    secs=$(echo "$end - $start" | bc -l)
    drain[$k]=$secs
    printf '%d worker(s): %d queued (of %d), drained in %.2f s = %.0f msg/s; attempts %d, deliveries not attempted exactly once %d, sink received %d\n' \
        "$k" "$queued" "$n" "$secs" "$(echo "$queued / $secs" | bc -l)" "$attempts" "$not_once" "$received"
    if [ "$attempts" != "$n" ] || [ "$not_once" != 0 ] || [ "$received" != "$n" ]; then
        echo "FAILED: not exactly once (kept in $work)" >&2
        LP_BENCH_KEEP=1
        exit 1
    fi
    psql "$pg" -qAtc "DROP DATABASE $name"
done
printf 'two workers / one: %.2f x the speed (drain %.2f s against %.2f s)\n' \
    "$(echo "${drain[1]} / ${drain[2]}" | bc -l)" "${drain[2]}" "${drain[1]}"
