#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks.
#
#   scripts/pg-test-cluster.sh start DIR   creates a cluster in DIR (an empty or missing folder),
#                                          starts it on a free loopback port and prints its
#                                          superuser URL on stdout (the only line printed there)
#   scripts/pg-test-cluster.sh stop DIR    stops that cluster and deletes DIR
#   scripts/pg-test-cluster.sh restart DIR stops that cluster (closing every connection) and
#                                          starts it again on the same port
#   scripts/pg-test-cluster.sh start DIR --tls CERT KEY
#                                          the same with TLS on (ssl=on), the server presenting
#                                          the PEM certificate CERT (its chain) and key KEY;
#                                          clients may still connect without TLS
#
# It uses Debian's server binaries (/usr/lib/postgresql/<version>/bin, the newest version found),
# installing the `postgresql` package with apt-get when there are none. The cluster belongs to an
# unprivileged user (`postgres` when run as root: initdb refuses root), listens on 127.0.0.1
# only, keeps its socket in DIR, and runs with fsync off: it is for data that may be lost.
# The superuser `postgres` logs in over TCP with the password `dsm-test` (SCRAM).
set -euo pipefail

PASSWORD="dsm-test"

die() {
    echo "pg-test-cluster: $*" >&2
    exit 2
}

find_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
        if [[ "$(id -u)" -ne 0 ]]; then
            die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; install the \`postgresql\` package (as root: apt-get install -y postgresql)"
        fi
        echo "pg-test-cluster: installing the postgresql package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        # The package's own cluster is not wanted: only its binaries.
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/dsm-no-main.conf
        apt-get install -y -qq postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$dir"
}

# Runs a command as the cluster's owner.
as_owner() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir="$1" cert="${2:-}" key="${3:-}" bin port tls=""
    bin=$(find_bin)
    mkdir -p "$dir"
    [[ -z "$(ls -A "$dir")" ]] || die "folder \`$dir\` is not empty"
    if [[ "$(id -u)" -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
        chown postgres "$dir"
    fi
    chmod 700 "$dir"
    echo "$PASSWORD" >"$dir/.pwfile"
    [[ "$(id -u)" -ne 0 ]] || chown postgres "$dir/.pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/.pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    rm -f "$dir/.pwfile"
    if [[ -n "$cert" ]]; then
        # The server refuses a key that others can read; both files go into the data folder.
        install -m 600 "$cert" "$dir/data/server.crt"
        install -m 600 "$key" "$dir/data/server.key"
        [[ "$(id -u)" -ne 0 ]] || chown postgres "$dir/data/server.crt" "$dir/data/server.key"
        tls="-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    fi
    port=$(free_port)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 $tls" \
        >&2 || { cat "$dir/server.log" >&2; die "the server did not start"; }
    echo "$bin" >"$dir/bin"
    echo "postgres://postgres:$PASSWORD@127.0.0.1:$port/postgres"
}

stop() {
    local dir="$1"
    [[ -d "$dir" ]] || return 0
    if [[ -f "$dir/bin" && -d "$dir/data" ]]; then
        as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

restart() {
    local dir="$1"
    [[ -f "$dir/bin" && -d "$dir/data" ]] || die "no cluster in \`$dir\`"
    as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null 2>&1 ||
        { cat "$dir/server.log" >&2; die "the server did not restart"; }
}

case "${1:-}" in
    start)
        if [[ $# -eq 5 && "$3" == "--tls" ]]; then
            [[ -r "$4" && -r "$5" ]] || die "cannot read the certificate \`$4\` or the key \`$5\`"
            start "$2" "$4" "$5"
        else
            [[ $# -eq 2 ]] || die "usage: $0 start DIR [--tls CERT KEY]"
            start "$2"
        fi
        ;;
    stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
    restart) [[ $# -eq 2 ]] || die "usage: $0 restart DIR"; restart "$2" ;;
    *) die "usage: $0 start DIR [--tls CERT KEY] | stop DIR | restart DIR" ;;
esac
