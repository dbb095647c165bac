#!/usr/bin/env bash
# Time to recovery of the self-healing loop as shipped: runs tests/tests/loop_self_healing.rs
# RUNS times (default 3). Each run starts the example set with only its documented values
# changed (real dockerd, Prometheus, Alertmanager, stackmedic-exporter, stackmedic-remediator,
# shipped intervals, `for:` and backoffs), stops the watched container five times and kills it
# for about a second once; this script collects each outage's time from `docker stop` to the
# container running and answering 200, where that time goes (the stop itself, detection, the
# remediator's own share from storing the alert's job to the start of the Docker call, the
# Engine's start, the first answer) and the actions taken for the blip (0 is right), and prints
# every run and the median and worst. docs/benchmarks.md records the figures.
#
#   scripts/bench-loop.sh [RUNS]
#
# Needs what the test needs (dockerd, prometheus, prometheus-alertmanager; scripts/test.sh
# installs them) and the debug build of the binaries, which it makes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS="${1:-3}"
cargo build --workspace --bins
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for run in $(seq 1 "$RUNS"); do
    echo "== run $run of $RUNS"
    if ! cargo nextest run -p stackmedic-tests --test loop_self_healing --no-capture >"$log.run" 2>&1; then
        cat "$log.run" >&2
        rm -f "$log.run"
        echo "run $run failed" >&2
        exit 1
    fi
    grep '^loop:' "$log.run" | sed "s/^/run=$run /" | tee -a "$log"
    rm -f "$log.run"
done

python3 - "$log" <<'PY'
import re, statistics, sys

mttr, share, fix, blips = [], [], [], []
phases = {"stop": [], "detect": [], "remediator": [], "start": [], "answer": []}
for line in open(sys.argv[1]):
    m = re.search(r"mttr_seconds=([0-9.]+) remediator_ms=([0-9.]+|retry)", line)
    if m:
        total = float(m.group(1))
        mttr.append(total)
        if m.group(2) != "retry":
            share.append(float(m.group(2)))
        t = dict(re.findall(r"(\w+)_after_s=([0-9.]+|nan)", line))
        if all(k in t and t[k] != "nan" for k in ("stopped", "accepted", "started", "running")) and m.group(2) != "retry":
            stopped, accepted, started, running = (float(t[k]) for k in ("stopped", "accepted", "started", "running"))
            phases["stop"].append(stopped)
            phases["detect"].append(accepted - stopped)
            phases["remediator"].append(started - accepted)
            phases["start"].append(running - started)
            phases["answer"].append(total - running)
    m = re.search(r"page resolved at on-call in ([0-9.]+) s", line)
    if m:
        fix.append(float(m.group(1)))
    m = re.search(r"loop: blip down_seconds=([0-9.]+) actions=([0-9]+)", line)
    if m:
        blips.append((float(m.group(1)), int(m.group(2))))
if not mttr:
    sys.exit("no outage measured")
print()
print(f"outages: {len(mttr)}")
print(f"time to recovery: median {statistics.median(mttr):.1f} s, worst {max(mttr):.1f} s, best {min(mttr):.1f} s")
if share:
    print(f"remediator's share (job stored -> Docker call): median {statistics.median(share):.1f} ms, worst {max(share):.1f} ms ({len(share)} outages; the others recovered by a retry after the backoff)")
if phases["stop"]:
    names = {
        "stop": "docker stop -> the Engine stopped it",
        "detect": "stopped -> the alert's job stored (exporter, scrape, rule, Alertmanager)",
        "remediator": "job stored -> Docker call",
        "start": "Docker call -> the Engine started it",
        "answer": "started -> the page answers 200 (as polled)",
    }
    print("where the time goes (median, worst):")
    for key, values in phases.items():
        print(f"  {names[key]}: {statistics.median(values):.2f} s, {max(values):.2f} s")
if blips:
    print(f"blips: {len(blips)} (down {min(b[0] for b in blips):.2f}-{max(b[0] for b in blips):.2f} s by the Engine's clock), actions: {sum(b[1] for b in blips)}")
if fix:
    print(f"human fix -> page resolved at on-call: worst {max(fix):.1f} s over {len(fix)} runs")
PY
