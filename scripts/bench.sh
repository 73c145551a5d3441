#!/usr/bin/env bash
# Benchmarks, measured side by side in one run (docs/benchmarks.md):
#   scripts/bench.sh drain [envelopes]   the drain vs a row-at-a-time client vs the floor
#   scripts/bench.sh queue [jobs] [cycles]  claim->complete cycles/s, 1/4/16 claimers, vs the Go claim
#   scripts/bench.sh requests              requests of a GitHub collection vs the Go endpoint plan
#   scripts/bench.sh gitlab [copies]       requests of a GitLab collection (18 x copies MRs) vs the Go GitLab plan
#   scripts/bench.sh facade <repo> [rounds]  facade ingest vs git log --numstat on a clone of <repo>
#   scripts/bench.sh views [repos]         aggregates' cost in the drain; refreshes and readers on a synthetic fleet
#   scripts/bench.sh storage [repos]       bytes per row and repository; commits one table vs partitioned by repo_id
#   scripts/bench.sh fleet [small] [large]   tick(), queue_health(), why_not_collected(), claims, refresh on 10K vs 100K repositories
#   scripts/bench.sh manifests [copies]    parse_manifest() on a corpus of real manifests vs reading them
#   scripts/bench.sh distribution [repos]  distribution scans: calls per scan by source, scans/hour against local servers
#   scripts/bench.sh identity [people]     enrichment/search-resolve convergence on a replayed fleet; merges on 100K contributors
#   scripts/bench.sh labor <clone>... [rounds]  labor count of the HEAD tree vs the facade walk; writes of an unchanged HEAD
#   scripts/bench.sh dependencies [repos]  requests per repository of the dependency analysis vs the Go plan; package cache hit rate; unchanged HEAD
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
    gitlab) cargo run -q --release -p aveloxis-tests --bin bench_gitlab -- "${2:-3}" ;;
    facade)
        repo=${2:?"usage: scripts/bench.sh facade <path of a git repository with 10,000+ commits> [rounds]"}
        cargo build -q --release -p collector-agent
        AVELOXIS_AGENT_PROFILE=release cargo run -q --release -p aveloxis-tests --bin bench_facade -- "$repo" "${3:-3}" ;;
    views) cargo run -q --release -p aveloxis-tests --bin bench_views -- "${2:-1000}" ;;
    storage) cargo run -q --release -p aveloxis-tests --bin bench_storage -- "${2:-1000}" ;;
    fleet) cargo run -q --release -p aveloxis-tests --bin bench_fleet -- "${2:-10000}" "${3:-100000}" ;;
    distribution)
        cargo build -q --release -p collector-agent
        AVELOXIS_AGENT_PROFILE=release cargo run -q --release -p aveloxis-tests --bin bench_distribution -- "${2:-56}" ;;
    manifests) cargo run -q --release -p aveloxis-tests --bin bench_manifests -- "${2:-2000}" ;;
    identity) cargo run -q --release -p aveloxis-tests --bin bench_identity -- "${2:-2000}" ;;
    labor)
        [ $# -ge 2 ] || die "usage: scripts/bench.sh labor <bare clone of a real repository>... [rounds]"
        cargo build -q --release -p collector-agent
        AVELOXIS_AGENT_PROFILE=release cargo run -q --release -p aveloxis-tests --bin bench_labor -- "${@:2}" ;;
    dependencies)
        cargo build -q --release -p collector-agent
        AVELOXIS_AGENT_PROFILE=release cargo run -q --release -p aveloxis-tests --bin bench_dependencies -- "${2:-40}" ;;
    *) die "unknown benchmark '$what' (known: drain, queue, requests, gitlab, facade, views, storage, fleet, manifests, distribution, identity, labor, dependencies)" ;;
esac
