#!/usr/bin/env bash
# Durable webhooks per second of the remediator, measured from a separate load-generator
# process: ./scripts/bench-webhooks.sh
#
# Builds the remediator and its load generator (remediator/examples/webhook_load.rs) in release,
# starts the remediator on 127.0.0.1 with a fresh database (WAL, synchronous=FULL: every 200
# follows a committed transaction whose log is on disk) and a rule that stores every alert as a
# job decided as a dry run, then runs the generator: SENDERS connections (default 16), each
# posting one notification of a new alert occurrence at a time, for DURATION seconds (default 20) after
# WARMUP (default 2). Prints the generator's figures, the server's CPU time and peak memory.
#
# NICE=-10 runs the server and the generator at that priority (root only), so that on a machine
# shared with other work the figure is closer to what the server itself can do; the printed
# load average says how busy the machine was.
# SERVER_LOG=path writes the server's log (errors only) there instead of to standard error.
# SERVER=path runs another build of the server (to compare two versions on the same load).
# PERF=1 records the server with `perf record -g` during the measured period and prints the
# top of the profile (linux-perf must be installed). SAME=1 re-sends one alert (deduplication).
# PG=1 stores in PostgreSQL instead of SQLite (root only): a private cluster of the Debian
# package's server (the newest under /usr/lib/postgresql) in the work folder, fsync and
# synchronous_commit on (its defaults), reached over TCP on 127.0.0.1 with a password from a
# file, as replicas sharing a store reach it. PG_OPTIONS adds server options ("-c name=value").
# PG_STATS=1 (with PG=1) loads pg_stat_statements and prints, after the run, the statements
# that took PostgreSQL the most time: calls, rows, mean and total time of each.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

senders="${SENDERS:-16}"
seconds="${DURATION:-20}"
warmup="${WARMUP:-2}"

cargo build --release -p stackmedic-remediator --bin stackmedic-remediator --example webhook_load >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
server="${SERVER:-$target_dir/release/stackmedic-remediator}"
load="$target_dir/release/examples/webhook_load"

# STORAGE=/dev/shm puts the database on another file system (tmpfs: flushes cost nothing, which
# separates the server's own cost from the disk's).
work="$(mktemp -d "${STORAGE:-/tmp}/stackmedic-bench-XXXXXX")"
cleanup() {
    if [[ -n "${pid:-}" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ -n "${pgbin:-}" ]]; then
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/remediator.yml" <<'EOF'
global: {reconcile_interval: 0s}
targets:
  - name: storm
    http: {base_url: 'http://127.0.0.1:9/'}
rules:
  - name: storm
    matchers: ['alertname="Storm"']
    action: http_sequence
    target: storm
    dry_run: true
    steps: [{path: /restart}]
EOF

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
storage=(--storage.path="$work/data")
if [[ "${PG:-0}" == 1 ]]; then
    pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    chmod 0755 "$work"
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$work/pg-password"
    chmod 0644 "$work/pg-password"
    install -d -o postgres -m 0700 "$work/pg"
    runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U stackmedic --pwfile="$work/pg-password" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    pg_port="$(free_port)"
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
        -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 ${PG_OPTIONS:-} \
            $([[ "${PG_STATS:-0}" == 1 ]] && echo "-c shared_preload_libraries=pg_stat_statements")" start >/dev/null
    if [[ "${PG_STATS:-0}" == 1 ]]; then
        "$pgbin/psql" -q -h "$work/pg" -p "$pg_port" -U stackmedic -d postgres -c "CREATE EXTENSION pg_stat_statements" >/dev/null
    fi
    storage=(--storage.url="postgres://stackmedic@127.0.0.1:$pg_port/postgres"
        --storage.password-file="$work/pg-password")
    echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port, data in $work/pg"
fi

port="$(free_port)"
nice -n "${NICE:-0}" "$server" --config.file="$work/remediator.yml" "${storage[@]}" \
    --web.listen-address="127.0.0.1:$port" --log.level=error 2>"${SERVER_LOG:-/dev/stderr}" &
pid=$!
for _ in $(seq 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/-/ready', timeout=1)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

cpu_seconds() {
    # utime + stime of the server, in clock ticks, from /proc/<pid>/stat.
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$pid/stat"
}

echo "$(date -u +%FT%TZ) $(nproc) CPU(s), nice ${NICE:-0}, load average $(cut -d' ' -f1-3 /proc/loadavg), database on $(df --output=source "$work" | tail -1)"
# What a flush costs on that file system right now: durable webhooks per second are bounded by
# it, since every answer waits for one.
python3 - "$work/fsync-probe" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
times = []
for _ in range(200):
    os.write(fd, b"x" * 8192)
    t = time.perf_counter()
    os.fdatasync(fd)
    times.append((time.perf_counter() - t) * 1000)
os.close(fd)
os.unlink(sys.argv[1])
times.sort()
print(f"fdatasync of 8 KiB on it: ms p50 {times[100]:.2f} p90 {times[180]:.2f} p99 {times[198]:.2f} mean {sum(times) / len(times):.2f}")
EOF
args=(--url "http://127.0.0.1:$port/webhook" --senders "$senders" --seconds "$seconds" --warmup "$warmup")
if [[ "${SAME:-0}" == 1 ]]; then
    args+=(--same)
fi
pg_cpu_seconds() {
    # The same for every process of the PostgreSQL cluster (its server and its backends).
    if [[ -n "${pgbin:-}" ]]; then
        local total=0 p
        for p in $(pgrep -f -- "-D $work/pg" ; pgrep -P "$(pgrep -f -- "-D $work/pg" | head -n 1)"); do
            total="$(awk -v hz="$(getconf CLK_TCK)" -v t="$total" '{print t + ($14 + $15) / hz}' "/proc/$p/stat" 2>/dev/null || echo "$total")"
        done
        echo "$total"
    else
        echo 0
    fi
}
cpu_before="$(cpu_seconds)"
pg_cpu_before="$(pg_cpu_seconds)"
started="$(date +%s.%N)"
if [[ "${PERF:-0}" == 1 ]]; then
    nice -n "${NICE:-0}" "$load" "${args[@]}" | tee "$work/load.txt" &
    load_pid=$!
    sleep "$warmup"
    perf record --call-graph "${PERF_CALLGRAPH:-dwarf,16384}" -F "${PERF_FREQ:-499}" -o "$work/perf.data" -p "$pid" -- sleep "$seconds" >/dev/null 2>&1
    wait "$load_pid"
else
    nice -n "${NICE:-0}" "$load" "${args[@]}" | tee "$work/load.txt"
fi
ended="$(date +%s.%N)"
cpu_after="$(cpu_seconds)"
pg_cpu_after="$(pg_cpu_seconds)"
python3 - "$cpu_before" "$cpu_after" "$started" "$ended" "$work/load.txt" "$pg_cpu_before" "$pg_cpu_after" <<'EOF'
import re, sys
before, after, start, end = map(float, sys.argv[1:5])
pg_cpu = float(sys.argv[7]) - float(sys.argv[6])
cpu, wall = after - before, end - start
line = f"server CPU {cpu:.1f} s in {wall:.1f} s of load ({cpu / wall:.2f} cores)"
rate = re.search(r"= (\d+)/s", open(sys.argv[5]).read())
if rate and int(rate.group(1)) > 0:
    # The rate of the measured period stands for the warm-up too.
    line += f", about {cpu / (int(rate.group(1)) * wall) * 1e6:.0f} µs per notification"
    if pg_cpu > 0:
        line += (f"; PostgreSQL CPU {pg_cpu:.1f} s ({pg_cpu / wall:.2f} cores), about "
                 f"{pg_cpu / (int(rate.group(1)) * wall) * 1e6:.0f} µs per notification")
print(line)
EOF
echo "server peak RSS $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")"
# Whether deciding kept pace with accepting: alerts queued against jobs ended (each decided as a
# dry run), and the jobs still due, as the load ends.
python3 - "$port" <<'EOF'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
def total(name, must=""):
    return sum(float(v) for labels, v in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)
               if must in labels)
queued = total("stackmedic_remediator_alerts_total", 'decision="queued"')
ended = total("stackmedic_remediator_actions_total")
depth = total("stackmedic_remediator_queue_depth")
print(f"as the load ends: {queued:.0f} alerts queued, {ended:.0f} jobs ended, queue depth {depth:.0f}")
EOF
if [[ "${PG_STATS:-0}" == 1 ]]; then
    "$pgbin/psql" -h "$work/pg" -p "$pg_port" -U stackmedic -d postgres -P pager=off -c \
        "SELECT calls, rows, round(mean_exec_time::numeric, 3) AS mean_ms, round(total_exec_time::numeric) AS total_ms,
                left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS statement
         FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
fi
if [[ "${PERF:-0}" == 1 ]]; then
    cp "$work/perf.data" "${PERF_OUT:-/tmp/stackmedic-webhooks.perf.data}"
    perf report -i "$work/perf.data" --no-children --percent-limit 0.7 --stdio 2>/dev/null \
        | grep -v '^$' | grep -E '^ +[0-9]' | head -60
fi
