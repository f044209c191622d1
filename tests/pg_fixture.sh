#!/bin/sh
# Start or stop a throwaway PostgreSQL cluster with its unix socket in DIR.
# usage: pg_fixture.sh start|stop DIR
# initdb refuses to run as root, so as root the cluster runs as "postgres".
set -eu
cmd=$1
dir=$2
bindir=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ "$(id -u)" = 0 ]; then as="runuser -u postgres --"; else as=""; fi
cd /tmp
case $cmd in
start)
    if [ -f "$dir/data/postmaster.pid" ]; then
        $as "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ -n "$as" ]; then chown postgres:postgres "$dir"; fi
    $as "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1
    $as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses='' -k $dir -p 5432 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null
    ;;
stop)
    $as "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: pg_fixture.sh start|stop DIR" >&2
    exit 2
    ;;
esac
