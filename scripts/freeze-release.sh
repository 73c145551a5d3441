#!/usr/bin/env bash
# Freezes the current version's install script as migrations/pg_aveloxis--<version>.sql.
#
# Every version that lands on main is a release: its install script is frozen here and
# never edited again (docs/upgrades.md). Run this once the version's schema is final,
# after writing its upgrade script; tests/tests/upgrade.rs checks both.
set -euo pipefail
. "$(dirname "$0")/common.sh"

version=$(extension_version)
target=$REPO_ROOT/migrations/pg_aveloxis--$version.sql
if [ -e "$target" ]; then
    die "$target exists: released install scripts are frozen. Bump the version in pg_aveloxis/Cargo.toml for a new schema."
fi
(cd "$REPO_ROOT/pg_aveloxis" && cargo pgrx schema pg$PG_MAJOR --out "$target")
echo "froze $target"
