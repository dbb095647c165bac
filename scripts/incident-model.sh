#!/usr/bin/env bash
# The long run of the incident model's model-based test: random sequences of alerts, resolves,
# action outcomes, kill -9, store errors, dry run, removed rules, reconciliation and resets,
# driven through the real store (the normal test run, ./scripts/test.sh, runs 1,000).
#
#   ./scripts/incident-model.sh [SEQUENCES]
#
# SEQUENCES defaults to 20000. A failure prints the sequence, shrunk to a short one.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

sequences="${1:-20000}"
echo "incident model: ${sequences} sequences"
STACKMEDIC_INCIDENT_MODEL_CASES="$sequences" \
    cargo nextest run -p stackmedic-remediator --test incident_model --no-capture
