#!/usr/bin/env bash
# What PostgreSQL itself can do on this machine, without the remediator: the ceiling for
# durable webhooks on PostgreSQL (docs/benchmarks.md#postgresql). Root only.
#
# Makes a private cluster of the Debian package's server (the newest under /usr/lib/postgresql)
# in a work folder, with its default settings (fsync and synchronous_commit on), and runs
# PostgreSQL's own load generator, pgbench, over TCP on 127.0.0.1 with SENDERS clients (default
# 16, as scripts/bench-webhooks.sh) and prepared statements, DURATION seconds each (default 20):
#
# 1. select-only: one primary-key read per transaction, the cheapest statement there is;
# 2. notification-shaped: per transaction the statements the remediator runs for one
#    notification decided as a dry run (7 primary-key reads, 2 inserts, 2 updates), then a
#    commit;
# 3. the same, 8 notifications per commit (about the batches the remediator's store thread
#    commits under that load).
#
# Prints pgbench's transactions per second and latency, and the CPU time the cluster's
# processes used per transaction.
set -euo pipefail

senders="${SENDERS:-16}"
seconds="${DURATION:-20}"
pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

work="$(mktemp -d /tmp/stackmedic-pg-ceiling-XXXXXX)"
cleanup() {
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
chmod 0755 "$work"
install -d -o postgres -m 0700 "$work/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U bench --auth=trust >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null
export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=bench PGDATABASE=postgres
"$pgbin/pgbench" -i -q -s 1 >/dev/null 2>&1

cluster_cpu() {
    # utime + stime of the cluster's server and every backend, in seconds: the server's own
    # with that of its children that exited (pgbench's backends end with their connections),
    # then each living child's.
    local main total p
    main="$(head -n 1 "$work/pg/postmaster.pid")"
    total="$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15 + $16 + $17) / hz}' "/proc/$main/stat")"
    for p in $(pgrep -P "$main"); do
        total="$(awk -v hz="$(getconf CLK_TCK)" -v t="$total" '{print t + ($14 + $15) / hz}' "/proc/$p/stat" 2>/dev/null || echo "$total")"
    done
    echo "$total"
}

notification() {
    cat <<'EOF'
\set a random(1, 100000)
\set b random(1, 100000)
SELECT abalance FROM pgbench_accounts WHERE aid = :a;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :a, 1, CURRENT_TIMESTAMP);
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (2, 1, :b, 1, CURRENT_TIMESTAMP);
SELECT abalance FROM pgbench_accounts WHERE aid = :b;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :a;
SELECT abalance FROM pgbench_accounts WHERE aid = :a;
SELECT bbalance FROM pgbench_branches WHERE bid = 1;
SELECT abalance FROM pgbench_accounts WHERE aid = :b;
SELECT tbalance FROM pgbench_tellers WHERE tid = 1;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :b;
SELECT abalance FROM pgbench_accounts WHERE aid = :a;
EOF
}

{
    echo 'BEGIN;'
    notification
    echo 'END;'
} >"$work/one.sql"
{
    echo 'BEGIN;'
    for _ in 1 2 3 4 5 6 7 8; do notification; done
    echo 'END;'
} >"$work/eight.sql"

echo "$(date -u +%FT%TZ) PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), $(nproc) CPU(s), load average $(cut -d' ' -f1-3 /proc/loadavg), $senders clients"
run() {
    local name="$1" per="$2"
    shift 2
    local before after out tps
    before="$(cluster_cpu)"
    out="$("$pgbin/pgbench" -n -M prepared --max-tries=20 -c "$senders" -j 2 -T "$seconds" "$@" 2>&1)"
    after="$(cluster_cpu)"
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")"
    lat="$(sed -n 's/^latency average = \(.*\)$/\1/p' <<<"$out")"
    python3 - "$name" "$per" "$tps" "$lat" "$before" "$after" "$seconds" <<'EOF'
import sys
name, per, tps, lat, before, after, seconds = sys.argv[1:]
per, tps, cpu = int(per), float(tps), float(after) - float(before)
print(f"{name}: {tps:,.0f} transactions/s = {tps * per:,.0f} per second of what one stands for "
      f"(latency average {lat}); cluster CPU {cpu / float(seconds):.2f} cores, "
      f"{cpu / (tps * float(seconds)) * 1e6 / per:.0f} µs each")
EOF
}
run "select-only (reads/s)" 1 -S
run "notification-shaped, a commit each (notifications/s)" 1 -f "$work/one.sql"
run "notification-shaped, 8 per commit (notifications/s)" 8 -f "$work/eight.sql"
