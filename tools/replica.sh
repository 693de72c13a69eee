#!/usr/bin/env bash
# A PostgreSQL streaming replica of the local server, for the replica tests:
#   tools/replica.sh start DIR PORT   base backup of 127.0.0.1:5432 into DIR, started on PORT
#   tools/replica.sh stop DIR         stops it (the directory stays)
#   tools/replica.sh restart DIR      starts a stopped one again
#   tools/replica.sh remove DIR       stops it and deletes DIR
# The primary must accept replication connections from 127.0.0.1 (tools/test.sh sees to
# that). As root, the server runs as the postgres user. Prints nothing on success.
set -euo pipefail

readonly PRIMARY_HOST=127.0.0.1
readonly PRIMARY_PORT=5432
readonly PRIMARY_USER=postgres

log() { echo "tools/replica.sh: $*" >&2; }

pg_bin() {
    local version
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
    if [ -n "$version" ] && [ -x "/usr/lib/postgresql/$version/bin/$1" ]; then
        echo "/usr/lib/postgresql/$version/bin/$1"
    elif command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    else
        log "ERROR: $1 is not installed"
        return 1
    fi
}

# Runs a server program as the user owning the data directory: postgres refuses root.
as_server_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir="$1" port="$2"
    [ ! -e "$dir/PG_VERSION" ] || { log "ERROR: $dir already holds a server"; return 1; }
    mkdir -p "$dir"
    [ "$(id -u)" != 0 ] || chown postgres: "$dir"
    as_server_user test -w "$dir" ||
        { log "ERROR: the postgres user cannot write $dir (is a directory above it closed to it?)"; return 1; }
    chmod 700 "$dir"
    # -R writes standby.signal and primary_conninfo: the copy starts as a streaming replica.
    as_server_user "$(pg_bin pg_basebackup)" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" \
        -U "$PRIMARY_USER" -D "$dir" -R -X stream --checkpoint=fast
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "hot_standby = on"
        # A query on the replica is not cancelled by the replay of a conflicting change
        # for this long.
        echo "max_standby_streaming_delay = 30s"
        echo "hot_standby_feedback = on"
    } | as_server_user tee -a "$dir/postgresql.auto.conf" >/dev/null
    # The primary's configuration lives in /etc on Debian; the copy needs a file of its own.
    [ -f "$dir/postgresql.conf" ] || as_server_user touch "$dir/postgresql.conf"
    [ -f "$dir/pg_hba.conf" ] || printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' |
        as_server_user tee "$dir/pg_hba.conf" >/dev/null
    restart "$dir"
}

server_ctl() {
    local dir="$1"
    shift
    as_server_user "$(pg_bin pg_ctl)" -D "$dir" -l "$dir/server.log" "$@"
}

restart() {
    local dir="$1"
    server_ctl "$dir" -w -t 60 start >/dev/null ||
        { log "ERROR: the replica in $dir did not start:"; tail -20 "$dir/server.log" >&2; return 1; }
}

stop() {
    local dir="$1"
    [ -f "$dir/postmaster.pid" ] || return 0
    server_ctl "$dir" -w -t 60 -m fast stop >/dev/null
}

case "${1:-}" in
    start) start "$2" "$3" ;;
    stop) stop "$2" ;;
    restart) restart "$2" ;;
    remove)
        stop "$2" || true
        rm -rf "$2"
        ;;
    *)
        log "usage: $0 start DIR PORT | stop DIR | restart DIR | remove DIR"
        exit 2
        ;;
esac
