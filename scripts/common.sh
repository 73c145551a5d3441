# Shared settings for the project's scripts; sourced, not run.
# shellcheck shell=bash
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
# initdb refuses root; cargo pgrx test reads $USER.
export USER=${USER:-$(id -un)}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root (for apt and installs), with sudo when we are not root.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a command as the postgres OS user (initdb and the server refuse root).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"
    elif [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
    else sudo -u postgres "$@"
    fi
}

extension_version() {
    sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/pg_aveloxis/Cargo.toml" | head -n1
}

# The virtual environment of the SBOM validators (scripts/setup.sh installs it).
sbom_venv_dir() {
    echo "${AVELOXIS_SBOM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/aveloxis/sbom-venv}"
}
