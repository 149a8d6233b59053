#!/bin/sh
# One-shot (temporalio/admin-tools): Temporal's two databases and their schemas, brought to the
# version of this admin-tools image. Safe to run on every `docker compose up`.
# The password comes from SQL_PASSWORD (read by temporal-sql-tool), not the command line.
set -eu

sql_tool() {
    temporal-sql-tool --plugin postgres12 --ep temporal-postgres -p 5432 -u "$POSTGRES_USER" "$@"
}

create_database() {
    if ! output=$(sql_tool --db "$1" create 2>&1); then
        case "$output" in
            *"already exists"*) echo "database $1 exists" ;;
            *) echo "$output" >&2; exit 1 ;;
        esac
    fi
}

for database in temporal temporal_visibility; do
    create_database "$database"
done
sql_tool --db temporal setup-schema -v 0.0
sql_tool --db temporal update-schema -d /etc/temporal/schema/postgresql/v12/temporal/versioned
sql_tool --db temporal_visibility setup-schema -v 0.0
sql_tool --db temporal_visibility update-schema -d /etc/temporal/schema/postgresql/v12/visibility/versioned
echo "temporal schema ready"
