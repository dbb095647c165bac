#!/usr/bin/env bash
# SHA-384 speed of the SRI probe's hasher next to `openssl dgst -sha384`, on the same files, in
# one run. Usage: scripts/bench-sri.sh [SIZE_MIB] [FILES]   (default 1024 and 4)
#
# 1. One core: a file of SIZE_MIB random bytes (page cache warm) hashed by our hasher
#    (aws-lc-rs), by the `sha2` crate it replaced, by openssl, and by openssl with its AVX2 code
#    turned off (OPENSSL_ia32cap), which shows where the gap to openssl comes from. Each is
#    timed three times; the least CPU time (user + system, bash's `time`) counts, so that other
#    load on the machine disturbs the figures less. Speed is MiB per CPU second.
# 2. Memory: the peak resident size of our hasher for that file.
# 3. Several changed files: FILES files of SIZE_MIB/FILES each, checked by the release exporter's
#    `sri` probe (the real code path: manifest, root, cache), against a manifest made by openssl.
#    Prints the run's duration (wall), the exporter's CPU time, the cores that used, its peak
#    resident size, and openssl hashing the same files one after another.
# Needs: openssl, python3; builds the exporter and the sri_hash example with --release.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size_mib="${1:-1024}"
files="${2:-4}"
command -v openssl >/dev/null || { echo "openssl is not installed" >&2; exit 1; }

cargo build --release -q -p stackmedic-exporter --bin stackmedic-exporter --example sri_hash
ours="target/release/examples/sri_hash"
exporter="target/release/stackmedic-exporter"

tmp="$(mktemp -d)"
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
file="$tmp/asset.bin"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$file"
cat "$file" >/dev/null   # page cache, so that every run reads from memory

load() { cut -d' ' -f1 /proc/loadavg; }
# Least CPU seconds (user + system) of three runs of "$@"; the output of the last run is kept
# in $tmp/out.
least_cpu() {
    local best="" t
    for _ in 1 2 3; do
        t="$( { TIMEFORMAT='%3U %3S'; time "$@" >"$tmp/out"; } 2>&1 | tail -1 | awk '{printf "%.3f", $1 + $2}')"
        best="$(awk -v a="$best" -v b="$t" 'BEGIN {print (a == "" || b < a) ? b : a}')"
    done
    echo "$best"
}
rate() { awk -v m="$1" -v s="$2" 'BEGIN {printf "%.0f", m / s}'; }
ossl_token() { echo "sha384-$(openssl dgst -sha384 -binary "$1" | openssl base64 -A)"; }

echo "date:    $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(openssl version)"
echo "load:    $(load) at start"

# 1. One core.
load1="$(load)"
cpu_ours="$(least_cpu "$ours" sha384 "$file")"
token="$(awk '/^token/ {print $2}' "$tmp/out")"
peak="$(awk '/^peak_rss_kib/ {print $2}' "$tmp/out")"
cpu_sha2="$(least_cpu "$ours" --sha2 sha384 "$file")"
token_sha2="$(awk '/^token/ {print $2}' "$tmp/out")"
cpu_ossl="$(least_cpu openssl dgst -sha384 -binary "$file")"
cpu_avx="$(OPENSSL_ia32cap=':~0x20' least_cpu openssl dgst -sha384 -binary "$file")"
expected="$(ossl_token "$file")"
if [[ "$token" != "$expected" || "$token_sha2" != "$expected" ]]; then
    echo "digest mismatch: ours $token, sha2 $token_sha2, openssl $expected" >&2
    exit 1
fi
echo "one core, ${size_mib} MiB file, least CPU time of 3 runs (load $load1 .. $(load)):"
echo "  stackmedic (aws-lc-rs)    ${cpu_ours} s  $(rate "$size_mib" "$cpu_ours") MiB/s"
echo "  sha2 crate (before)       ${cpu_sha2} s  $(rate "$size_mib" "$cpu_sha2") MiB/s"
echo "  openssl dgst              ${cpu_ossl} s  $(rate "$size_mib" "$cpu_ossl") MiB/s"
echo "  openssl dgst, AVX2 off    ${cpu_avx} s  $(rate "$size_mib" "$cpu_avx") MiB/s"
echo "  speed ratio stackmedic/openssl: $(awk -v a="$cpu_ossl" -v b="$cpu_ours" 'BEGIN {printf "%.2f", a / b}')," \
     "sha2/openssl: $(awk -v a="$cpu_ossl" -v b="$cpu_sha2" 'BEGIN {printf "%.2f", a / b}')," \
     "stackmedic/openssl without AVX2: $(awk -v a="$cpu_avx" -v b="$cpu_ours" 'BEGIN {printf "%.2f", a / b}')"
echo "  peak resident size of our hasher: ${peak} KiB; tokens equal: $token"

# 3. Several changed files through the exporter's sri probe.
www="$tmp/www"
mkdir -p "$www"
part=$((size_mib / files))
manifest="{"
for i in $(seq 1 "$files"); do
    head -c "$((part * 1024 * 1024))" /dev/urandom >"$www/asset$i.js"
    [[ $i -gt 1 ]] && manifest+=","
    manifest+="\"asset$i.js\": {\"sha384\": \"$(ossl_token "$www/asset$i.js")\"}"
done
echo "$manifest}" >"$tmp/sri-manifest.json"
cat "$www"/* >/dev/null
load3="$(load)"
ossl_files="$( { TIMEFORMAT='%3R %3U %3S'; time (for f in "$www"/*; do openssl dgst -sha384 -binary "$f" >/dev/null; done); } 2>&1 | tail -1)"
cat >"$tmp/exporter.yml" <<EOF
probes:
  - name: sri
    interval: 1h
    timeout: 30m
    sri:
      manifest: $tmp/sri-manifest.json
      root: $www
EOF
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$exporter" --config.file "$tmp/exporter.yml" --web.listen-address "127.0.0.1:$port" --log.level warn &
pid=$!
metric() {
    # awk reads everything: leaving early would break curl's pipe.
    curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk -v m="$1" '!found && index($0, m) == 1 {v = $NF; found = 1} END {print v}' || true
}
# While the run goes, the CPU time of each of the exporter's threads (the last value seen before
# a thread ends), to show how the hashing was shared out.
declare -A thread_cpu=()
for _ in $(seq 1 36000); do
    for t in /proc/"$pid"/task/*; do
        v="$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)" || continue
        [[ -n "$v" ]] && thread_cpu[${t##*/}]="$v"
    done
    [[ "$(metric 'stackmedic_probe_runs_total{probe="sri"')" == "1" ]] && break
    sleep 0.1
done
busy="$(for v in "${thread_cpu[@]}"; do echo "$v"; done | sort -rn | awk -v t="$(getconf CLK_TCK)" '$1 / t >= 0.05 {printf "%s%.2f", sep, $1 / t; sep = ", "}')"
duration="$(metric 'stackmedic_probe_duration_seconds{probe="sri"')"
checked="$(metric 'stackmedic_sri_entries_checked{probe="sri",source="file"}')"
drifted="$(metric 'stackmedic_sri_entries_drifted{probe="sri",source="file"}')"
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
cpu="$(awk -v u="$utime" -v s="$stime" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (u + s) / t}')"
hwm="$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
if [[ "$checked" != "$files" || "$drifted" != "0" ]]; then
    echo "the sri probe checked $checked entries with $drifted drifted, expected $files and 0" >&2
    exit 1
fi
echo "$files changed files of $part MiB through the exporter's sri probe (load $load3 .. $(load)):"
echo "  stackmedic: the run took $(printf '%.2f' "$duration") s, the process used $cpu s of CPU" \
     "($(awk -v c="$cpu" -v d="$duration" 'BEGIN {printf "%.1f", c / d}') cores); peak resident size ${hwm} KiB"
echo "  CPU seconds of each thread with 0.05 s or more: ${busy:-none seen}"
echo "  openssl dgst, one file after another: $(awk '{printf "%.2f s wall, %.2f s CPU", $1, $2 + $3}' <<<"$ossl_files")"
