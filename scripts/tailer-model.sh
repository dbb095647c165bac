#!/usr/bin/env bash
# The long run of the access-log tailer's model-based test: thousands of random rotation
# sequences against the real tailer on real files (the normal test run, ./scripts/test.sh,
# runs 300 of them).
#
#   ./scripts/tailer-model.sh [SEQUENCES [FIRST]]
#
# SEQUENCES defaults to 5000; FIRST to a number taken from the clock, printed first so that a
# failing run can be repeated exactly.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

sequences="${1:-5000}"
first="${2:-$(date +%s)}"
echo "tailer model: ${sequences} sequences from first ${first}"
STACKMEDIC_TAILER_SEQUENCES="$sequences" STACKMEDIC_TAILER_FIRST="$first" \
    cargo nextest run -p stackmedic-tests --test exporter_tailer_model --no-capture
