#!/usr/bin/env bash
# The long run of the access-log tailer's model-based test: thousands of random rotation
# sequences against the real tailer on real files (the normal test run, ./scripts/test.sh,
# runs 300 of them).
#
#   ./scripts/tailer-model.sh [SEQUENCES [FIRST_SEED]]
#
# SEQUENCES defaults to 5000; FIRST_SEED to a seed taken from the clock, printed first so that a
# failing run can be repeated exactly.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

sequences="${1:-5000}"
seed="${2:-$(date +%s)}"
echo "tailer model: ${sequences} sequences from seed ${seed}"
STACKMEDIC_TAILER_SEQUENCES="$sequences" STACKMEDIC_TAILER_SEED="$seed" \
    cargo nextest run -p stackmedic-tests --test exporter_tailer_model --no-capture
