#!/usr/bin/env bash
# Builds and tests the whole workspace: SQLite in temporary files, PostgreSQL in a fresh
# database made for this run and dropped at exit. Runs from any directory.
# With CI=true, a PostgreSQL that cannot be reached is a failure; otherwise a warning.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly PG_USER=postgres
export PGCONNECT_TIMEOUT=5

log() { echo "tools/test.sh: $*" >&2; }

admin_sql() {
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"
}

postgres_reachable() {
    command -v psql >/dev/null 2>&1 && admin_sql 'SELECT 1' >/dev/null 2>&1
}

first_cluster_version() {
    ls /etc/postgresql 2>/dev/null | head -1
}

start_cluster() {
    local version
    version="$(first_cluster_version)"
    [ -n "$version" ] || return 1
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        postgres_reachable && return 0
        sleep 1
    done
    return 1
}

# A fresh install only allows peer and password logins; the tests connect over TCP
# as postgres without a password.
trust_local_connections() {
    local version hba
    version="$(first_cluster_version)"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    [ -f "$hba" ] || return 0
    grep -q 'bondledger-test' "$hba" && return 0
    log "configuring trust authentication for local connections in $hba"
    {
        echo "# bondledger-test: trust local connections (test machines only)"
        echo "local all all trust"
        echo "host all all 127.0.0.1/32 trust"
        echo "host all all ::1/128 trust"
        cat "$hba"
    } >"$hba.new"
    mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
}

install_postgres() {
    log "PostgreSQL is not installed; installing it"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y postgresql || return 1
    trust_local_connections
}

ensure_postgres() {
    postgres_reachable && return 0
    start_cluster && return 0
    if [ -z "$(first_cluster_version)" ]; then
        install_postgres && start_cluster && return 0
    fi
    postgres_reachable
}

database=""
drop_database() {
    if [ -n "$database" ]; then
        admin_sql "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 ||
            log "could not drop database $database"
    fi
}
trap drop_database EXIT

if ensure_postgres; then
    database="bondledger_test_$(date +%s)_$$_${RANDOM}"
    admin_sql "CREATE DATABASE $database" >/dev/null
    export BONDLEDGER_TEST_POSTGRES_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$database"
    log "PostgreSQL tests use $BONDLEDGER_TEST_POSTGRES_URL"
elif [ "${CI:-}" = "true" ]; then
    log "ERROR: PostgreSQL at $PG_HOST:$PG_PORT cannot be reached, and CI=true requires it"
    exit 1
else
    log "WARNING: PostgreSQL at $PG_HOST:$PG_PORT cannot be reached; its tests will only warn"
fi

# The replica tests need a streaming replica of the server: a base backup
# into a temporary directory, started on a free port, removed at exit.
replica_dir=""
# The primary takes replication connections from 127.0.0.1 without a password
# (test machines only), as it takes the tests' own connections.
allow_local_replication() {
    local version hba
    version="$(first_cluster_version)"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    [ -f "$hba" ] || return 0
    grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba" && return 0
    log "allowing replication connections from 127.0.0.1 in $hba"
    { echo "# bondledger-test-replication: streaming replicas of the tests connect from 127.0.0.1"
      echo "host replication all 127.0.0.1/32 trust"
      cat "$hba"; } >"$hba.new"
    mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_replica() {
    allow_local_replication
    local port
    for port in $(seq 5433 5499); do
        port_free "$port" && break
    done
    replica_dir="$(mktemp -d /tmp/bondledger-replica.XXXXXX)"
    # The server runs as the postgres user, which must reach its data directory.
    chmod 755 "$replica_dir"
    log "starting a streaming replica in $replica_dir on port $port"
    bash tools/replica.sh start "$replica_dir/data" "$port" || return 1
    export BONDLEDGER_TEST_REPLICA_URL="postgres://$PG_USER@$PG_HOST:$port/$database"
    export BONDLEDGER_TEST_REPLICA_DIR="$replica_dir/data"
    log "replica tests read $BONDLEDGER_TEST_REPLICA_URL"
}

remove_replica() {
    if [ -n "$replica_dir" ]; then
        bash tools/replica.sh remove "$replica_dir/data" || log "could not stop the replica in $replica_dir"
        rm -rf "$replica_dir"
    fi
}
trap 'remove_replica; drop_database' EXIT

if [ -n "$database" ] && ! start_replica; then
    if [ "${CI:-}" = "true" ]; then
        log "ERROR: no streaming replica could be started, and CI=true requires one"
        exit 1
    fi
    log "WARNING: no streaming replica could be started; the replica tests will only warn"
fi

# The dashboard's browser tests drive headless Chromium through chromedriver.
ensure_browser() {
    [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ] && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    log "installing chromium and chromium-driver"
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
    [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]
}

# Screenshots should show the dashboard's Chinese labels, not empty boxes: a
# CJK font if none is installed (best effort; the tests do not depend on it).
ensure_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ] && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
    log "installing a CJK font for the dashboard's screenshots"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1; } ||
        log "WARNING: no CJK font could be installed; screenshots will show boxes for Chinese text"
}

if ! ensure_browser; then
    if [ "${CI:-}" = "true" ]; then
        log "ERROR: chromium and chromium-driver cannot be installed, and CI=true requires them"
        exit 1
    fi
    log "WARNING: chromium or chromium-driver is missing; the dashboard tests will only warn"
fi
ensure_cjk_font

cargo build --workspace --all-targets
test_log="$(mktemp)"
cargo test --workspace 2>&1 | tee "$test_log"

# ---- more test steps go here (end-to-end suites, smoke runs); they see
# ---- BONDLEDGER_TEST_POSTGRES_URL and run before the database is dropped.

# The benchmark harness still runs, on a few events per backend. `append` writes raw
# store events that are no movements, so the ledger's commands run first (on SQLite,
# in a file of their own).
bench_ledger_commands() {
    local url="$1"
    local bench=(cargo run --quiet -p bondledger-bench --)
    "${bench[@]}" import --database-url "$url" --scale 200 --manuals 2 >/dev/null
    "${bench[@]}" appends --database-url "$url" --scale 10 --writers 2 >/dev/null
    "${bench[@]}" verify --database-url "$url" --scale 100 >/dev/null
    "${bench[@]}" as-of --database-url "$url" --scale 100 --queries 5 >/dev/null
    "${bench[@]}" catch-up --database-url "$url" --scale 200 --rate 20 --seconds 1 >/dev/null
    "${bench[@]}" timeline --database-url "$url" --scale 200 --queries 5 >/dev/null
    "${bench[@]}" growth --database-url "$url" --scale 400 --step 200 --appends 3 --queries 3 >/dev/null
}
bench_dir="$(mktemp -d)"
bench_ledger_commands "sqlite://$bench_dir/ledger.db"
cargo run --quiet -p bondledger-bench -- append --database-url "sqlite://$bench_dir/bench.db" --events 20
rm -rf "$bench_dir"
if [ -n "$database" ]; then
    bench_ledger_commands "$BONDLEDGER_TEST_POSTGRES_URL"
    cargo run --quiet -p bondledger-bench -- append --database-url "$BONDLEDGER_TEST_POSTGRES_URL" --events 20
fi
if [ -n "${BONDLEDGER_TEST_REPLICA_URL:-}" ]; then
    cargo run --quiet -p bondledger-bench -- replica-lag --database-url "$BONDLEDGER_TEST_POSTGRES_URL" \
        --read-database-url "$BONDLEDGER_TEST_REPLICA_URL" --writers 2 --seconds 1 >/dev/null
fi

# One closing line over every test binary of the run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) passed += $(i-1); if ($i ~ /^failed;?$/) failed += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$test_log"
rm -f "$test_log"
