#!/usr/bin/env bash
# Builds pg_aveloxis and installs it into the system PostgreSQL: the library, the
# generated install script, every upgrade script of migrations/, and the frozen
# install scripts of released versions (so CREATE EXTENSION ... VERSION '<old>' works).
set -euo pipefail
. "$(dirname "$0")/common.sh"

step "installing pg_aveloxis $(extension_version) into $($PG_CONFIG --sharedir)/extension"
sudo_flag=()
[ "$(id -u)" -eq 0 ] || sudo_flag=(--sudo)
(cd "$REPO_ROOT/pg_aveloxis" && cargo pgrx install --pg-config "$PG_CONFIG" "${sudo_flag[@]}" "$@")

# Upgrade scripts travel with `cargo pgrx install` (pg_aveloxis/sql -> ../migrations);
# frozen base scripts of older releases are ours to copy. The current version's script
# is the one pgrx just generated (the upgrade test checks it equals the frozen one).
current=$(extension_version)
extdir=$($PG_CONFIG --sharedir)/extension
for f in "$REPO_ROOT"/migrations/pg_aveloxis--*.sql; do
    name=$(basename "$f")
    if [[ $name =~ ^pg_aveloxis--([0-9][^-]*)\.sql$ ]] && [ "${BASH_REMATCH[1]}" != "$current" ]; then
        as_root install -m 0644 "$f" "$extdir/$name"
    fi
done
