#!/bin/sh
# First start on an empty data directory: initdb with POSTGRES_USER / POSTGRES_PASSWORD,
# password (SCRAM) authentication over the network, POSTGRES_DB created. Then the server.
set -eu

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    user=${POSTGRES_USER:-postgres}
    password_file=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    database=${POSTGRES_DB:-$user}
    if [ "$database" != postgres ]; then
        # Unix socket only while the database is made: nothing connects before it exists.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        echo 'CREATE DATABASE :"db"' | psql -v ON_ERROR_STOP=1 --username="$user" \
            --dbname=postgres --set=db="$database" >/dev/null
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "initialised $PGDATA: user $user, database $database"
fi
exec "$@"
