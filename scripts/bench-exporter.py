#!/usr/bin/env python3
"""Benchmark of stackmedic-exporter against a real nginx target, side by side with
blackbox_exporter (Debian's prometheus-blackbox-exporter) probing the same target in the same
run.

Prints, for 1,000 configured HTTP probes: the CPU time one probe costs with kept-alive
connections and with `reuse_connections: false` (a new connection per probe, as
blackbox_exporter does), the same for blackbox_exporter, their ratios, /metrics latency
(p50, p99, max) and resident memory. CPU time is read from /proc/PID/stat (user and system,
all threads) and /proc/PID/task/*/schedstat (exact), so it is the exporter's own cost; the
load average is printed with every figure, because other processes on the machine still slow a
process down (caches, scheduling), which its CPU time does show.

With --callgrind it instead counts the instructions of one probe run under valgrind's
callgrind (200 probes, user space only): a figure that does not move with the machine's load,
for before/after comparisons. --baseline BINARY measures another build of the exporter the
same way in the same run (e.g. the release binary of an older commit).

/metrics is scraped twice over, 1,000 times 50 ms apart on one connection by curl (--client
python: Python's http.client, as before): as the text format without compression, and as
Prometheus asks (OpenMetrics preferred, gzip). --sizes 100,1000,3000,10000 instead measures, for each probe
count, resident memory and /metrics latency (the growth table of docs/benchmarks.md).

Usage: scripts/bench-exporter.py [--probes 1000] [--interval 10] [--window 30]
                                 [--blackbox-probes 3000] [--scrapes 1000] [--cold-scrapes 5]
                                 [--client curl|python]
                                 [--baseline BINARY] [--callgrind] [--log-level info]
                                 [--sizes N,N,...]
Needs: a release build (cargo build --release -p stackmedic-exporter), nginx,
prometheus-blackbox-exporter, curl; valgrind for --callgrind. Talks to 127.0.0.1 only.
"""

import argparse
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"port {port} did not open")


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def cpu_ticks(pid):
    """(user, system) CPU time of the whole process, in clock ticks (sampled by the tick)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def cpu_ns(pid):
    """CPU time of the process's live threads in nanoseconds, from the scheduler's exact
    account (/proc/PID/task/*/schedstat). Tick-based user/system times can be off by a lot for
    a process that wakes briefly and often (its wake-ups may keep step with the timer tick), so
    this is the figure printed; user and system times are shown beside it as a cross-check."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def rss_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def runs_total(metrics_url):
    total = 0.0
    for line in get(metrics_url).decode().splitlines():
        if line.startswith("stackmedic_probe_runs_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_nginx(tmp):
    port = free_port()
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "ready"), "w") as f:
        f.write('{"ready":true}\n')
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
{"user root root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{port}; root {www}; keepalive_requests 100000; }}
}}
""")
    proc = subprocess.Popen(["/usr/sbin/nginx", "-c", conf, "-p", tmp])
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}/ready"


def start_stackmedic(binary, tmp, target, probes, interval, reuse, log_level, wrapper=()):
    cfg = os.path.join(tmp, f"stackmedic-{os.getpid()}-{time.monotonic_ns()}.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  max_concurrency: 64\nprobes:\n")
        for i in range(probes):
            f.write(f"  - name: p{i}\n    interval: {interval}s\n    timeout: 5s\n"
                    f"    http:\n      url: {target}\n")
            if not reuse:
                f.write("      reuse_connections: false\n")
    port = free_port()
    log = open(cfg + ".log", "w")
    proc = subprocess.Popen([*wrapper, binary, "--config.file", cfg, "--web.listen-address",
                             f"127.0.0.1:{port}", "--log.level", log_level], stderr=log)
    try:
        wait_port(port, timeout=120)
    except SystemExit:
        with open(cfg + ".log") as f:
            sys.stderr.write(f.read())
        raise
    return proc, f"http://127.0.0.1:{port}/metrics"


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# What Prometheus sends: OpenMetrics preferred, gzip accepted.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


# Which client scrapes: "curl" (default) or "python" (http.client, the client of the figures
# recorded before 2026-12-06 evening); set by --client.
CLIENT = "curl"


def scrape_latencies(url, n, headers=None, pause=0.05):
    """Latency of n scrapes over one kept-alive connection, as Prometheus scrapes, and one
    answer's body; with PROMETHEUS_HEADERS the body comes gzip-compressed (it is not
    decompressed: Prometheus does that on its side, and its time is not the exporter's).

    With curl (the default) one curl process makes the n requests on one connection, started
    1/pause per second (--rate), each body written to /dev/null, and reports each request's
    time from sending to the last byte (time_total); a client in C that keeps no body costs
    the measurement less than Python does (about 0.6 ms less for 4.4 MB from nginx). The body
    is read once more with urllib for its size and series."""
    if CLIENT == "python":
        return scrape_latencies_python(url, n, headers, pause)
    curl = shutil.which("curl")
    if not curl:
        sys.exit("curl is not installed (apt-get install curl), or use --client python")
    config = "".join(f'url = "{url}"\noutput = "/dev/null"\n' for _ in range(n))
    cmd = [curl, "--silent", "--show-error", "--fail", "--config", "-",
           "--rate", f"{round(1 / pause)}/s", "--max-time", "30",
           "--write-out", "%{time_total} %{num_connects} %{http_code}\\n"]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}: {v}"]
    out = subprocess.run(cmd, input=config, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"curl failed: {out.stderr.strip()}")
    lat, connects = [], 0
    for line in out.stdout.splitlines():
        total, conns, code = line.split()
        if code != "200":
            sys.exit(f"scrape answered {code}")
        lat.append(float(total) * 1000)
        connects += int(conns)
    if len(lat) != n or connects != 1:
        sys.exit(f"curl made {len(lat)} scrapes over {connects} connections, not {n} over one")
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    lat.sort()
    return lat, body


def scrape_latencies_python(url, n, headers=None, pause=0.05):
    """The same with Python's http.client, reading each whole body into memory."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    lat, body = [], b""
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", parsed.path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        lat.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            sys.exit(f"scrape answered {r.status}")
        time.sleep(pause)
    conn.close()
    lat.sort()
    return lat, body


def compressed(body):
    """Whether a body is gzip (an older build answers uncompressed whatever it is asked)."""
    return body[:2] == b"\x1f\x8b"


def percentile(lat, p):
    return lat[max(int(len(lat) * p) - 1, 0)]


def bench_stackmedic(binary, tmp, target, args, reuse, scrapes):
    proc, url = start_stackmedic(binary, tmp, target, args.probes, args.interval, reuse,
                                 args.log_level)
    # Let every probe run at least once before measuring.
    time.sleep(args.interval + 2)
    load0 = loadavg()
    r0 = runs_total(url)
    u0, s0 = cpu_ticks(proc.pid)
    n0 = cpu_ns(proc.pid)
    time.sleep(args.window)
    n1 = cpu_ns(proc.pid)
    u1, s1 = cpu_ticks(proc.pid)
    r1 = runs_total(url)
    runs = max(r1 - r0, 1)
    result = {
        "runs": r1 - r0,
        "cpu_us": (n1 - n0) / 1e3 / runs,
        "user_us": (u1 - u0) / TICK / runs * 1e6,
        "sys_us": (s1 - s0) / TICK / runs * 1e6,
        "load": (load0 + loadavg()) / 2,
    }
    if scrapes:
        # Scrape latency, measured after the CPU window so scrapes do not count as probe cost;
        # probes keep running meanwhile, as they do when Prometheus scrapes. First scrapes an
        # interval apart, as Prometheus scrapes (every probe ran since the last one, so all are
        # rendered anew), then many in a row (most probes are answered from their text).
        cold = []
        for _ in range(args.cold_scrapes):
            time.sleep(args.interval)
            lat, _ = scrape_latencies(url, 1)
            cold.append(lat[0])
        result["cold_ms"] = sorted(cold)
        load0 = loadavg()
        c0 = cpu_ns(proc.pid)
        lat, body = scrape_latencies(url, scrapes)
        c1 = cpu_ns(proc.pid)
        glat, gbody = scrape_latencies(url, scrapes, PROMETHEUS_HEADERS)
        c2 = cpu_ns(proc.pid)
        result.update({
            "metrics_p50_ms": statistics.median(lat),
            "metrics_p99_ms": percentile(lat, 0.99),
            "metrics_max_ms": lat[-1],
            "metrics_bytes": len(body),
            "series": sum(1 for l in body.decode().splitlines() if l and not l.startswith("#")),
            "scrape_load": (load0 + loadavg()) / 2,
            # Includes the probes that ran meanwhile: an upper bound of a scrape's CPU time.
            "scrape_cpu_ms": (c1 - c0) / 1e6 / len(lat),
            "gzip_p50_ms": statistics.median(glat),
            "gzip_p99_ms": percentile(glat, 0.99),
            "gzip_max_ms": glat[-1],
            "gzip_bytes": len(gbody),
            "gzip_answered": compressed(gbody),
            "gzip_cpu_ms": (c2 - c1) / 1e6 / len(glat),
        })
    result["rss_mib"] = rss_kib(proc.pid) / 1024
    result["peak_rss_mib"] = rss_kib(proc.pid, "VmHWM") / 1024
    stop(proc)
    return result


def bench_blackbox(tmp, target, n):
    binary = shutil.which("prometheus-blackbox-exporter")
    if not binary:
        sys.exit("prometheus-blackbox-exporter is not installed")
    cfg = os.path.join(tmp, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={cfg}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    url = (f"http://127.0.0.1:{port}/probe?module=http_2xx&target="
           + urllib.parse.quote(target, safe=""))
    for _ in range(50):
        get(url)
    load0 = loadavg()
    u0, s0 = cpu_ticks(proc.pid)
    n0 = cpu_ns(proc.pid)
    for _ in range(n):
        if b"probe_success 1" not in get(url):
            sys.exit("blackbox probe failed")
    n1 = cpu_ns(proc.pid)
    u1, s1 = cpu_ticks(proc.pid)
    result = {"probes": n, "cpu_us": (n1 - n0) / 1e3 / n,
              "user_us": (u1 - u0) / TICK / n * 1e6, "sys_us": (s1 - s0) / TICK / n * 1e6,
              "load": (load0 + loadavg()) / 2, "rss_mib": rss_kib(proc.pid) / 1024}
    stop(proc)
    return result


def callgrind_per_run(name, binary, tmp, target, args, reuse):
    """Instructions (user space) per probe run, counted by callgrind over args.window."""
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed")
    out = os.path.join(tmp, f"callgrind.{time.monotonic_ns()}")
    probes = 200
    proc, url = start_stackmedic(
        binary, tmp, target, probes, args.interval, reuse, args.log_level,
        wrapper=("valgrind", "-q", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}"))
    time.sleep(args.interval + 5)
    control = lambda *a: subprocess.run(["callgrind_control", *a, str(proc.pid)], check=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r0 = runs_total(url)
    control("-i", "on")
    time.sleep(args.window)
    control("-d")
    control("-i", "off")
    r1 = runs_total(url)
    stop(proc)
    dumps = [f for f in os.listdir(tmp) if f.startswith(os.path.basename(out) + ".")]
    if not dumps:
        sys.exit("callgrind wrote no profile")
    total = 0
    with open(os.path.join(tmp, max(dumps))) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    # Kept for callgrind_annotate: where the instructions of a run go.
    kept = os.path.join(tempfile.gettempdir(),
                        f"stackmedic-callgrind-{name}-{'keepalive' if reuse else 'fresh'}.out")
    shutil.copy(os.path.join(tmp, max(dumps)), kept)
    return {"runs": r1 - r0, "ir_per_run": total / max(r1 - r0, 1), "profile": kept}


def bench_sizes(binary, tmp, target, args):
    """Memory and /metrics latency for each probe count of --sizes (kept-alive probes): the
    growth from a hundred probes to ten thousand."""
    rows = []
    for n in args.sizes:
        proc, url = start_stackmedic(binary, tmp, target, n, args.interval, True, args.log_level)
        # Every probe ran, and ran again (their rendered texts exist), before measuring.
        time.sleep(2 * args.interval + 2)
        load0 = loadavg()
        cold = []
        for _ in range(args.cold_scrapes):
            time.sleep(args.interval)
            lat, _ = scrape_latencies(url, 1)
            cold.append(lat[0])
        lat, body = scrape_latencies(url, args.scrapes)
        glat, gbody = scrape_latencies(url, args.scrapes, PROMETHEUS_HEADERS)
        rss = rss_kib(proc.pid)
        if n == args.sizes[-1]:
            # For scale: the same client reading the same bytes as a static file from nginx
            # (sendfile, no work on the server's side).
            with open(os.path.join(tmp, "www", "metrics.txt"), "wb") as f:
                f.write(body)
            slat, _ = scrape_latencies(target.rsplit("/", 1)[0] + "/metrics.txt", args.scrapes)
            static = (statistics.median(slat), percentile(slat, 0.99), slat[-1], len(body))
        rows.append({
            "probes": n,
            "rss_mib": rss / 1024,
            "peak_mib": rss_kib(proc.pid, "VmHWM") / 1024,
            "kib_per_probe": rss / n,
            "series": sum(1 for l in body.decode().splitlines() if l and not l.startswith("#")),
            "bytes": len(body),
            "gzip_bytes": len(gbody),
            "p50": statistics.median(lat), "p99": percentile(lat, 0.99), "max": lat[-1],
            "gp50": statistics.median(glat), "gp99": percentile(glat, 0.99), "gmax": glat[-1],
            "cold": sorted(cold),
            "load": (load0 + loadavg()) / 2,
        })
        stop(proc)
        print(f"  measured {n} probes", flush=True)
    base = rows[0]
    print(f"for scale, the same {static[3] / 1e6:.2f} MB as a static file from nginx, same client: "
          f"p50 {static[0]:.2f} / p99 {static[1]:.2f} / max {static[2]:.2f} ms")
    print(f"growth with the number of http probes (kept-alive, every {args.interval}s), "
          f"{args.scrapes} scrapes 50 ms apart of each kind, client {args.client}:")
    print("| probes | series | text | gzip | resident | per probe | per added probe "
          "| text p50 / p99 / max | OpenMetrics+gzip p50 / p99 / max | one interval apart | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        added = ((r["rss_mib"] - base["rss_mib"]) * 1024 / (r["probes"] - base["probes"])
                 if r is not base else float("nan"))
        cold = ", ".join(f"{x:.1f}" for x in r["cold"])
        print(f"| {r['probes']:,} | {r['series']:,} | {r['bytes'] / 1e6:.2f} MB "
              f"| {r['gzip_bytes'] / 1e3:.0f} KB | {r['rss_mib']:.1f} MiB (peak {r['peak_mib']:.1f}) "
              f"| {r['kib_per_probe']:.2f} KiB | {added:.2f} KiB "
              f"| {r['p50']:.2f} / {r['p99']:.2f} / {r['max']:.2f} ms "
              f"| {r['gp50']:.2f} / {r['gp99']:.2f} / {r['gmax']:.2f} ms | {cold} ms | {r['load']:.1f} |")


def modes(build):
    """Connection modes measured for a build: a baseline may predate `reuse_connections`."""
    return (True,) if build == "baseline" else (True, False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--window", type=int, default=30)
    ap.add_argument("--blackbox-probes", type=int, default=3000)
    ap.add_argument("--scrapes", type=int, default=1000)
    ap.add_argument("--client", choices=("curl", "python"), default="curl",
                    help="what scrapes /metrics (curl: one connection, bodies discarded)")
    ap.add_argument("--cold-scrapes", type=int, default=5,
                    help="scrapes one interval apart, each after every probe ran again")
    ap.add_argument("--baseline", help="another stackmedic-exporter binary to measure too")
    ap.add_argument("--callgrind", action="store_true",
                    help="count instructions per run under callgrind instead of CPU time")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                    help="instead: memory and /metrics latency for each of these probe counts "
                         "(e.g. 100,1000,3000,10000)")
    args = ap.parse_args()
    global CLIENT
    CLIENT = args.client
    binary = os.path.join(ROOT, "target", "release", "stackmedic-exporter")
    if not os.path.exists(binary):
        sys.exit("build first: cargo build --release -p stackmedic-exporter")
    builds = [("stackmedic", binary)]
    if args.baseline:
        builds.append(("baseline", os.path.abspath(args.baseline)))
    tmp = tempfile.mkdtemp(prefix="stackmedic-bench-")
    nginx, target = start_nginx(tmp)
    print(f"date {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, "
          f"{open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}, "
          f"load {loadavg():.1f}")
    try:
        if args.sizes:
            bench_sizes(binary, tmp, target, args)
            return
        if args.callgrind:
            print(f"instructions per probe run (callgrind, 200 http probes every "
                  f"{args.interval}s, {args.window}s window, log level {args.log_level}):")
            for name, b in builds:
                for reuse in modes(name):
                    r = callgrind_per_run(name, b, tmp, target, args, reuse)
                    mode = "kept-alive" if reuse else "new connection per probe"
                    print(f"  {name:<11} {mode:<25} {r['ir_per_run']:>9,.0f} instructions"
                          f" ({r['runs']:.0f} runs; profile {r['profile']})", flush=True)
            return
        results = {}
        for name, b in builds:
            for reuse in modes(name):
                results[name, reuse] = bench_stackmedic(b, tmp, target, args, reuse,
                                                        args.scrapes if reuse else 0)
        bb = bench_blackbox(tmp, target, args.blackbox_probes)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{args.probes} http probes every {args.interval}s against nginx, "
          f"CPU time over {args.window}s, log level {args.log_level}:")
    for name, _ in builds:
        for reuse in modes(name):
            r = results[name, reuse]
            mode = "kept-alive" if reuse else "new connection per probe"
            print(f"  {name:<11} {mode:<25} {r['cpu_us']:6.0f} us per probe "
                  f"(ticks: user {r['user_us']:.0f}, system {r['sys_us']:.0f}; {r['runs']:.0f} runs; "
                  f"load {r['load']:.1f}); ratio blackbox/this {bb['cpu_us'] / r['cpu_us']:.1f}")
    print(f"  blackbox    new connection per probe  {bb['cpu_us']:6.0f} us per probe "
          f"(ticks: user {bb['user_us']:.0f}, system {bb['sys_us']:.0f}; {bb['probes']} /probe requests;"
          f" load {bb['load']:.1f}); resident {bb['rss_mib']:.1f} MiB")
    for name, _ in builds:
        s = results[name, True]
        cold = ", ".join(f"{x:.2f}" for x in s["cold_ms"])
        print(f"  {name:<11} /metrics one interval after the last scrape: {cold} ms")
        print(f"  {name:<11} /metrics: p50 {s['metrics_p50_ms']:.2f} ms, "
              f"p99 {s['metrics_p99_ms']:.2f} ms, max {s['metrics_max_ms']:.2f} ms over "
              f"{args.scrapes} scrapes by {args.client} ({s['series']} series, {s['metrics_bytes']} bytes; "
              f"CPU at most {s['scrape_cpu_ms']:.2f} ms per scrape; load {s['scrape_load']:.1f});"
              f" resident {s['rss_mib']:.1f} MiB (peak {s['peak_rss_mib']:.1f} MiB)")
        answered = "" if s["gzip_answered"] else ", answered uncompressed"
        print(f"  {name:<11} /metrics as Prometheus asks (OpenMetrics, gzip): "
              f"p50 {s['gzip_p50_ms']:.2f} ms, p99 {s['gzip_p99_ms']:.2f} ms, "
              f"max {s['gzip_max_ms']:.2f} ms ({s['gzip_bytes']} bytes{answered}; CPU at most "
              f"{s['gzip_cpu_ms']:.2f} ms per scrape)")
    if args.baseline:
        ratio = results["baseline", True]["cpu_us"] / results["stackmedic", True]["cpu_us"]
        print(f"  baseline/stackmedic CPU per probe, kept-alive: {ratio:.2f}")


if __name__ == "__main__":
    main()
