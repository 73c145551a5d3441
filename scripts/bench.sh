#!/usr/bin/env bash
# Benchmarks, measured side by side in one run (docs/benchmarks.md):
#   scripts/bench.sh drain [envelopes]   the drain vs a row-at-a-time client vs the floor
#   scripts/bench.sh queue [jobs] [cycles]  claim->complete cycles/s, 1/4/16 claimers, vs the Go claim
#   scripts/bench.sh requests              requests of a GitHub collection vs the Go endpoint plan
# Runs against a cluster of its own (same settings as the tests: fsync off for both sides).
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

what=${1:-drain}
scripts/setup.sh
# Benchmarks measure the optimized build of the extension.
scripts/install-extension.sh --release >/dev/null
checkout_id=$(printf '%s' "$REPO_ROOT" | md5sum | cut -c1-8)
export AVELOXIS_CLUSTER_DIR=/tmp/pg_aveloxis-bench-cluster-$checkout_id
scripts/cluster.sh destroy
scripts/cluster.sh start >/dev/null
trap 'scripts/cluster.sh stop' EXIT
AVELOXIS_TEST_DATABASE_URL=$(scripts/cluster.sh env | sed -n 's/^DATABASE_URL=//p')
export AVELOXIS_TEST_DATABASE_URL
case "$what" in
    drain) cargo run -q --release -p aveloxis-tests --bin bench_drain -- "${2:-100000}" ;;
    queue) cargo run -q --release -p aveloxis-tests --bin bench_queue -- "${2:-100000}" "${3:-5000}" ;;
    requests) cargo run -q --release -p aveloxis-tests --bin bench_requests ;;
    *) die "unknown benchmark '$what' (known: drain, queue, requests)" ;;
esac
