#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for development, the demo and the tests.
#
#   scripts/cluster.sh start     initdb if needed, start on a free local port (idempotent)
#   scripts/cluster.sh stop      stop it (idempotent)
#   scripts/cluster.sh status    say whether it runs, and where
#   scripts/cluster.sh env       print DATABASE_URL=... for `eval` or `source`
#   scripts/cluster.sh psql ...  psql into the cluster's `aveloxis` database
#   scripts/cluster.sh destroy   stop and delete it
#
# The cluster runs as the `postgres` OS user (initdb refuses root), preloads pg_cron
# (cron.database_name = aveloxis), trusts local connections and skips fsync: it holds
# nothing worth keeping. Its directory is AVELOXIS_CLUSTER_DIR, by default one per
# checkout under /tmp (which the postgres user can reach, unlike /root).
# AVELOXIS_CLUSTER_EXTRA_CONF, if set when the cluster is created, is appended to its
# configuration (one setting per line).
set -euo pipefail
. "$(dirname "$0")/common.sh"

checkout_id=$(printf '%s' "$REPO_ROOT" | md5sum | cut -c1-8)
CLUSTER_DIR=${AVELOXIS_CLUSTER_DIR:-/tmp/pg_aveloxis-cluster-$checkout_id}
DATA=$CLUSTER_DIR/data
LOG=$CLUSTER_DIR/postgres.log
ENV_FILE=$CLUSTER_DIR/env
DB_NAME=aveloxis

is_running() { [ -f "$DATA/PG_VERSION" ] && as_postgres "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port
    for ((port = 54320 + RANDOM % 500; port < 60000; port++)); do
        port_in_use "$port" || { echo "$port"; return; }
    done
    die "no free TCP port found between 54320 and 60000"
}

init_cluster() {
    [ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb not found: run scripts/setup.sh first"
    [ -f /usr/lib/postgresql/$PG_MAJOR/lib/pg_cron.so ] || die "pg_cron is not installed: run scripts/setup.sh first"
    step "creating a throwaway cluster in $CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR"
    chown postgres: "$CLUSTER_DIR" 2>/dev/null || as_root chown postgres: "$CLUSTER_DIR"
    as_postgres "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    as_postgres tee "$DATA/postgresql.auto.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$DB_NAME'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
CONF
    # Extra settings for a cluster of a special kind (e.g. the scheduler worker's test).
    if [ -n "${AVELOXIS_CLUSTER_EXTRA_CONF:-}" ]; then
        printf '%s\n' "$AVELOXIS_CLUSTER_EXTRA_CONF" | as_postgres tee -a "$DATA/postgresql.auto.conf" >/dev/null
    fi
}

start() {
    if is_running; then
        cat "$ENV_FILE"
        return
    fi
    [ -f "$DATA/PG_VERSION" ] || init_cluster
    local port
    port=$(free_port)
    step "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$port"
    if ! as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $port" -w -t 60 start >/dev/null; then
        tail -n 30 "$LOG" >&2 || true
        die "PostgreSQL did not start; its log is $LOG"
    fi
    local url="postgres://postgres@127.0.0.1:$port/$DB_NAME"
    as_postgres "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1 ||
        as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB_NAME"
    printf 'DATABASE_URL=%s\nPGPORT=%s\nAVELOXIS_CLUSTER_DIR=%s\n' "$url" "$port" "$CLUSTER_DIR" |
        as_postgres tee "$ENV_FILE" >/dev/null
    cat "$ENV_FILE"
}

stop() {
    if is_running; then
        step "stopping the cluster in $CLUSTER_DIR"
        as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status)
        if is_running; then echo "running: $(grep DATABASE_URL "$ENV_FILE")"; else echo "not running ($CLUSTER_DIR)"; exit 3; fi
        ;;
    env)
        is_running || die "the cluster is not running: scripts/cluster.sh start"
        cat "$ENV_FILE"
        ;;
    psql)
        shift
        is_running || die "the cluster is not running: scripts/cluster.sh start"
        url=$(sed -n 's/^DATABASE_URL=//p' "$ENV_FILE")
        exec "$PG_BIN/psql" "$url" "$@"
        ;;
    destroy)
        stop
        rm -rf "$CLUSTER_DIR"
        ;;
    *)
        sed -n '2,12p' "$0" >&2
        exit 2
        ;;
esac
