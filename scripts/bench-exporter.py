#!/usr/bin/env python3
"""Benchmark of stackmedic-exporter against a real nginx target, side by side with
blackbox_exporter (Debian's prometheus-blackbox-exporter) probing the same target.

Prints, for 1,000 configured HTTP probes: /metrics latency (p50, p99, max), resident memory,
and the CPU time one HTTP probe costs in each exporter.

Usage: scripts/bench-exporter.py [--probes 1000] [--interval 10] [--window 30]
Needs: a release build (cargo build --release -p stackmedic-exporter), nginx,
prometheus-blackbox-exporter. Talks to 127.0.0.1 only.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


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


def bench_stackmedic(tmp, target, args):
    binary = os.path.join(ROOT, "target", "release", "stackmedic-exporter")
    if not os.path.exists(binary):
        sys.exit("build first: cargo build --release -p stackmedic-exporter")
    cfg = os.path.join(tmp, "stackmedic.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  max_concurrency: 64\nprobes:\n")
        for i in range(args.probes):
            f.write(f"  - name: p{i}\n    interval: {args.interval}s\n    timeout: 5s\n"
                    f"    http:\n      url: {target}\n")
    port = free_port()
    proc = subprocess.Popen([binary, "--config.file", cfg, "--web.listen-address",
                             f"127.0.0.1:{port}", "--log.level", "warn"])
    wait_port(port)
    url = f"http://127.0.0.1:{port}/metrics"
    # Let every probe run at least once before measuring.
    time.sleep(args.interval + 2)
    r0, c0 = runs_total(url), cpu_seconds(proc.pid)
    time.sleep(args.window)
    r1, c1 = runs_total(url), cpu_seconds(proc.pid)
    # Scrape latency, measured after the CPU window so scrapes do not count as probe cost.
    lat = []
    body = b""
    for _ in range(50):
        t = time.perf_counter()
        body = get(url)
        lat.append((time.perf_counter() - t) * 1000)
        time.sleep(0.1)
    lat.sort()
    result = {
        "runs": r1 - r0,
        "cpu_per_probe_us": (c1 - c0) / max(r1 - r0, 1) * 1e6,
        "metrics_p50_ms": statistics.median(lat),
        "metrics_p99_ms": lat[int(len(lat) * 0.99) - 1],
        "metrics_max_ms": lat[-1],
        "metrics_bytes": len(body),
        "series": sum(1 for l in body.decode().splitlines() if l and not l.startswith("#")),
        "rss_mib": rss_kib(proc.pid) / 1024,
        "peak_rss_mib": rss_kib(proc.pid, "VmHWM") / 1024,
    }
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
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
           + urllib.request.quote(target, safe=""))
    for _ in range(50):
        get(url)
    c0 = cpu_seconds(proc.pid)
    for _ in range(n):
        if b"probe_success 1" not in get(url):
            sys.exit("blackbox probe failed")
    c1 = cpu_seconds(proc.pid)
    result = {"probes": n, "cpu_per_probe_us": (c1 - c0) / n * 1e6,
              "rss_mib": rss_kib(proc.pid) / 1024}
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--window", type=int, default=30)
    ap.add_argument("--blackbox-probes", type=int, default=3000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="stackmedic-bench-")
    nginx, target = start_nginx(tmp)
    try:
        s = bench_stackmedic(tmp, target, args)
        b = bench_blackbox(tmp, target, args.blackbox_probes)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"stackmedic-exporter, {args.probes} http probes every {args.interval}s against nginx:")
    print(f"  /metrics latency   p50 {s['metrics_p50_ms']:.1f} ms, p99 {s['metrics_p99_ms']:.1f} ms,"
          f" max {s['metrics_max_ms']:.1f} ms ({s['series']} series, {s['metrics_bytes']} bytes)")
    print(f"  resident memory    {s['rss_mib']:.1f} MiB (peak {s['peak_rss_mib']:.1f} MiB)")
    print(f"  CPU per probe      {s['cpu_per_probe_us']:.0f} us ({s['runs']:.0f} runs in {args.window}s)")
    print(f"blackbox_exporter, {b['probes']} /probe requests against the same target:")
    print(f"  CPU per probe      {b['cpu_per_probe_us']:.0f} us (resident {b['rss_mib']:.1f} MiB)")
    print(f"ratio blackbox/stackmedic CPU per probe: {b['cpu_per_probe_us'] / s['cpu_per_probe_us']:.2f}")


if __name__ == "__main__":
    main()
