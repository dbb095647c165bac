#!/usr/bin/env bash
# The fuzz campaign: ./scripts/fuzz-campaign.sh [target…] (all targets of fuzz/Cargo.toml when
# none are named), or ./scripts/fuzz-campaign.sh --pack [target…].
#
# Runs each target, one at a time and at the lowest CPU priority, until 10 million executions or
# 30 minutes, whichever comes first (FUZZ_RUNS and FUZZ_SECONDS change the budget), then prints
# one line of figures per target for docs/fuzzing.md. Needs the nightly toolchain and cargo-fuzz
# (see docs/fuzzing.md).
#
# The corpora are committed as one archive per target, fuzz/corpus/<target>.tar.gz, so that the
# tree stays readable. Before a target runs, its archive is unpacked into fuzz/corpus/<target>/
# (ignored by git) when that folder is empty; libFuzzer adds new units there; after the run the
# folder is minimized (`cargo fuzz cmin`) and packed into the archive again. --pack only packs
# the folders as they are (after a cmin of your own). Crashes go to fuzz/artifacts/<target>/: a
# fixed crash's input becomes a file of fuzz/regressions/<target>/, which stays a file.
#
# The target binaries are built once and copied to fuzz/target/campaign/ before the first run,
# so editing the sources while the campaign runs does not change what it fuzzes
# (FUZZ_BUILD=0 copies the binaries last built instead of building). Each run's libFuzzer
# output goes to fuzz/target/campaign/<target>.log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

runs="${FUZZ_RUNS:-10000000}"
seconds="${FUZZ_SECONDS:-1800}"
pack_only=0
if [[ "${1:-}" == --pack ]]; then
    pack_only=1
    shift
fi
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# The archive of a target's corpus, reproducible: names sorted, no times or owners.
pack() {
    local target="$1"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "corpus/$target" -cf - . \
        | gzip -9n >"corpus/$target.tar.gz.new"
    mv "corpus/$target.tar.gz.new" "corpus/$target.tar.gz"
    echo "corpus/$target.tar.gz: $(find "corpus/$target" -type f | wc -l) units"
}

unpack() {
    local target="$1"
    mkdir -p "corpus/$target"
    if [[ -z "$(ls -A "corpus/$target")" && -f "corpus/$target.tar.gz" ]]; then
        tar -C "corpus/$target" -xzf "corpus/$target.tar.gz"
    fi
}

if [[ "$pack_only" == 1 ]]; then
    for target in "${targets[@]}"; do
        pack "$target"
    done
    exit 0
fi

if [[ "${FUZZ_BUILD:-1}" != 0 ]]; then
    for target in "${targets[@]}"; do
        nice -n 19 cargo +nightly fuzz build "$target"
    done
fi

triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
campaign=target/campaign
mkdir -p "$campaign"
for target in "${targets[@]}"; do
    cp "target/$triple/release/$target" "$campaign/$target"
done

for target in "${targets[@]}"; do
    unpack "$target"
    mkdir -p "artifacts/$target"
    log="$campaign/$target.log"
    extra=()
    if [[ "$target" == ads ]]; then
        # The ads crate's client reads on a thread of its own that ends only after the client
        # is dropped and its socket shut down; LeakSanitizer, run when an input ends, takes
        # that still-exiting thread's allocations (112 bytes) for a leak, and at the process's
        # exit the probe runtime's idle blocking threads too. Leaks are not checked for this
        # target (neither per input nor at exit); every other check stays.
        extra=(-detect_leaks=0)
    fi
    started="$(date +%s)"
    status=0
    ASAN_OPTIONS="${ASAN_OPTIONS:-}${extra:+:detect_leaks=0}" nice -n 19 "$campaign/$target" \
        -runs="$runs" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" "${extra[@]}" "corpus/$target" \
        >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - started))
    stat() {
        sed -n "s/^stat::$1: *//p" "$log" | tail -n 1
    }
    crashes="$(find "artifacts/$target" -type f | wc -l)"
    printf '%s %s: %s s, %s executions, %s exec/s, %s new units, exit %s, %s artifacts\n' \
        "$(date +%F)" "$target" "$elapsed" "$(stat number_of_executed_units)" \
        "$(stat average_exec_per_sec)" "$(stat new_units_added)" "$status" "$crashes"
    ASAN_OPTIONS="${ASAN_OPTIONS:-}${extra:+:detect_leaks=0}" nice -n 19 cargo +nightly fuzz cmin "$target" >>"$log" 2>&1
    pack "$target"
done
