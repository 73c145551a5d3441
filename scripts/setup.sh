#!/usr/bin/env bash
# Installs everything pg_aveloxis needs on Debian 12, idempotently: apt packages,
# cargo-pgrx at the pinned version, and pgrx's pointer to the system PostgreSQL.
# When everything is present it only checks, in a second or two.
set -euo pipefail
. "$(dirname "$0")/common.sh"

# cmake builds zlib-ng into the agent's libgit2: inflating git objects is a quarter of
# the facade walk, and zlib-ng does it faster than the system zlib. plpgsql_check lints
# every PL/pgSQL routine of the extension in the tests (tests/tests/plpgsql_check.rs).
# cloc is the independent line counter the labor counts are checked against
# (tests/tests/analysis.rs). python3-venv holds the SBOM validators (below).
APT_PACKAGES=(
    postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron
    postgresql-$PG_MAJOR-plpgsql-check cloc python3-venv
    libclang-dev clang build-essential pkg-config libssl-dev sudo git ca-certificates cmake
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand (Debian 12 package names)"
    step "installing apt packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || die "cargo not found: install Rust 1.95 with rustup (https://rustup.rs)"
if ! cargo pgrx --version 2>/dev/null | grep -qx "cargo-pgrx $PGRX_VERSION"; then
    step "installing cargo-pgrx $PGRX_VERSION (takes 5-9 minutes on 2 cores, once)"
    cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi

pgrx_config=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if ! grep -qsF "pg$PG_MAJOR = \"$PG_CONFIG\"" "$pgrx_config"; then
    step "pointing pgrx at the system PostgreSQL $PG_MAJOR"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

# The official validators the SBOM tests check generated documents with (tests/tests/sbom.rs):
# CycloneDX's Python library (it carries the bom-1.5 and bom-1.6 JSON schemas) and the SPDX
# project's spdx-tools, pinned, in a virtual environment of their own.
sbom_venv=$(sbom_venv_dir)
if ! "$sbom_venv/bin/python" -c 'import cyclonedx.validation.json, spdx_tools' 2>/dev/null; then
    step "installing the SBOM validators into $sbom_venv"
    python3 -m venv "$sbom_venv"
    "$sbom_venv/bin/pip" install -q 'cyclonedx-python-lib[json-validation]==11.12.0' 'spdx-tools==0.8.5'
fi
