#!/bin/sh
# The stand-in for deploy/temporal/setup-schema.sh: creates the dev server's SQLite store (the
# server writes its schema when it first opens a new file), then stops. Safe to run again: an
# existing store is left as it is. "$store.ready" tells the server (server.sh) it may open it.
set -eu
store=${TEMPORAL_SQLITE_FILE:-/var/lib/temporal/temporal.db}
if [ -f "$store.ready" ]; then
    echo "temporal store $store exists"
    exit 0
fi
port=17233
temporal server start-dev --headless --ip 127.0.0.1 --port "$port" --db-filename "$store" \
    --log-level error &
server=$!
tries=0
until temporal operator cluster health --address "127.0.0.1:$port" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ] || ! kill -0 "$server" 2>/dev/null; then
        echo "the dev server did not create $store within 60 s" >&2
        kill "$server" 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done
kill -TERM "$server"
wait "$server" || true
touch "$store.ready"
echo "temporal schema ready in $store"
