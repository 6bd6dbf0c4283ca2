#!/bin/bash
# Two `letterpress worker`s on one PostgreSQL against one, into one smtp-sink
# (issue #11): the time from the workers' start to every delivery of the seed
# issue sent. A manual measurement beside lp-bench, on one machine:
#
#   cargo build --release --bin letterpress && N=20000 benches/two-workers.sh
#
# Needs psql, PostgreSQL on 127.0.0.1:5432 (trust auth) and postfix's
# smtp-sink. It queues the issue with the relay down (a closed port), then
# before each run makes every delivery queued and due again with one UPDATE,
# so each run delivers the same N messages. Exactly-once delivery by two
# workers is a test (tests/delivery/workers.rs), not measured here.
set -e
HERE=$(cd "$(dirname "$0")/.." && pwd)
LP=${LP:-$HERE/target/release/letterpress}
N=${N:-20000}
DB=lpw2
PGURL=postgres://postgres@127.0.0.1:5432/$DB
WORK=${WORK:-/tmp/lp-two-workers}; mkdir -p "$WORK"; cd "$WORK"
psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
: > none.toml
python3 - <<PY
with open("subs.csv","w") as f:
    f.write("email,name\n")
    for i in range($N):
        f.write(f"reader{i}@example.com,Reader {i}\n")
PY
for k in $(env | grep -o '^LETTERPRESS_[A-Z_]*'); do unset $k; done
export LETTERPRESS_DATABASE__URL=$PGURL LETTERPRESS_SERVER__SECRET=0123456789abcdef0123456789abcdef
export LETTERPRESS_CONTENT__ROOT=$HERE/../shared/corpus/rust-trends LETTERPRESS_CONTENT__TEMPLATE=$HERE/templates/default.mjml
export LETTERPRESS_DELIVERY__TRANSPORT=smtp LETTERPRESS_DELIVERY__RATE_PER_SECOND=0
export LETTERPRESS_DELIVERY__RETRY__INITIAL=1s
$LP --config none.toml migrate >/dev/null
$LP --config none.toml subscribers import subs.csv >/dev/null
# Queue the issue with the relay down (a closed port), then make every
# delivery due again.
LETTERPRESS_DELIVERY__SMTP_URL=smtp://127.0.0.1:9 $LP --config none.toml send $HERE/../shared/corpus/seed-issue.md --yes --wait=0s > send.log 2>&1 || true
tail -2 send.log
smtp-sink -u nobody 127.0.0.1:2526 256 & SINK=$!
trap "kill $SINK 2>/dev/null" EXIT
export LETTERPRESS_DELIVERY__SMTP_URL=smtp://127.0.0.1:2526
reset() { psql -q -h 127.0.0.1 -U postgres -d $DB -c "UPDATE deliveries SET status='queued', next_attempt_at=0, lease_owner=NULL, lease_until=NULL, attempts=0" ; psql -q -h 127.0.0.1 -U postgres -d $DB -c "VACUUM ANALYZE deliveries"; }
sent() { psql -At -h 127.0.0.1 -U postgres -d $DB -c "SELECT count(*) FROM deliveries WHERE status='sent'"; }
# WORKERS lists runs as COUNTxCONNECTIONS: one worker with 8 connections,
# two with 4 each (the same 8 into the sink), two with 8 each.
for round in 1 2 3; do
  for run in ${WORKERS:-1x8 2x4 2x8}; do
    w=${run%x*}
    export LETTERPRESS_DELIVERY__CONCURRENCY=${run#*x}
    reset
    start=$(date +%s.%N)
    pids=""
    for i in $(seq 1 $w); do $LP --config none.toml worker > worker$w.$i.log 2>&1 & pids="$pids $!"; done
    while [ "$(sent)" -lt "$N" ]; do sleep 0.05; done
    end=$(date +%s.%N)
    kill -TERM $pids 2>/dev/null || true; wait $pids 2>/dev/null || true
    echo "round $round workers $run: $(python3 -c "print(f'{$N/($end-$start):,.0f} msg/s, {($end-$start):.2f} s')")"
  done
done
