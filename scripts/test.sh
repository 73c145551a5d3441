#!/usr/bin/env bash
# Runs every test, in order of speed, stopping at the first failure:
#   formatting and lints -> plain Rust tests -> #[pg_test]s in pgrx's own cluster ->
#   end-to-end tests against the project's cluster (scripts/cluster.sh).
# Installs what is missing first (scripts/setup.sh). Exits non-zero on any failure.
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

scripts/setup.sh
checkout_id=$(printf '%s' "$REPO_ROOT" | md5sum | cut -c1-8)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (all targets, with the pg_test code)"
cargo clippy --workspace --all-targets --features pg_aveloxis/pg_test -- -D warnings

step "plain Rust tests (cargo test)"
cargo test

step "#[pg_test]s (cargo pgrx test pg$PG_MAJOR, as postgres)"
pgrx_pgdata=/tmp/pg_aveloxis-pgrx-test-$checkout_id
mkdir -p "$pgrx_pgdata"
chown postgres: "$pgrx_pgdata" 2>/dev/null || as_root chown postgres: "$pgrx_pgdata"
(cd pg_aveloxis && cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$pgrx_pgdata")

# cargo pgrx test installed a build with the test schema; put the real one back.
scripts/install-extension.sh

step "end-to-end tests (tests/)"
cargo build -p collector-agent
# A cluster of its own, new every run (roles and databases of earlier runs would hide
# first-install behaviour); kept after the run for a post-mortem, until the next run.
export AVELOXIS_CLUSTER_DIR=/tmp/pg_aveloxis-test-cluster-$checkout_id
scripts/cluster.sh destroy
scripts/cluster.sh start >/dev/null
trap 'scripts/cluster.sh stop' EXIT
AVELOXIS_TEST_DATABASE_URL=$(scripts/cluster.sh env | sed -n 's/^DATABASE_URL=//p')
export AVELOXIS_TEST_DATABASE_URL
cargo test -p aveloxis-tests

step "all tests passed"
