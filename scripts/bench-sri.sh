#!/usr/bin/env bash
# SHA-384 throughput of the SRI probe's hasher next to `openssl dgst -sha384`, on the same file,
# in one run. Usage: scripts/bench-sri.sh [SIZE_MIB]   (default 1024, i.e. a 1 GiB file)
#
# Builds the `sri_hash` example in release mode, writes a file of random bytes into a temporary
# folder, hashes it once to warm the page cache, then times our hasher and openssl on it and
# checks that both give the same SRI token. Prints both throughputs and our peak memory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size_mib="${1:-1024}"
command -v openssl >/dev/null || { echo "openssl is not installed" >&2; exit 1; }

cargo build --release -q -p stackmedic-exporter --example sri_hash
ours="target/release/examples/sri_hash"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
file="$tmp/asset.bin"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$file"
cat "$file" >/dev/null   # page cache, so both read from memory

# Our hasher (the probe's code path: fixed 128 KiB buffer, streaming).
our_out="$("$ours" sha384 "$file")"
our_token="$(awk '/^token/ {print $2}' <<<"$our_out")"
our_secs="$(awk '/^seconds/ {print $2}' <<<"$our_out")"
our_rss="$(awk '/^peak_rss_kib/ {print $2}' <<<"$our_out")"

# openssl, timed the same way (wall clock around the whole command).
start="$(date +%s.%N)"
ossl_token="sha384-$(openssl dgst -sha384 -binary "$file" | openssl base64 -A)"
end="$(date +%s.%N)"
ossl_secs="$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f", e - s}')"

if [[ "$our_token" != "$ossl_token" ]]; then
    echo "digest mismatch: ours $our_token, openssl $ossl_token" >&2
    exit 1
fi

rate() { awk -v m="$size_mib" -v s="$1" 'BEGIN {printf "%.0f", m / s}'; }
echo "date:        $(date -u +%Y-%m-%dT%H:%MZ)"
echo "cpu:         $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "file:        ${size_mib} MiB of random bytes (page cache warm)"
echo "stackmedic:  ${our_secs} s, $(rate "$our_secs") MiB/s, peak RSS ${our_rss} KiB"
echo "openssl:     ${ossl_secs} s, $(rate "$ossl_secs") MiB/s ($(openssl version))"
echo "tokens equal: $our_token"
