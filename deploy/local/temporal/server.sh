#!/bin/sh
# The dev server with the settings the compose file gives temporalio/server: BIND_ON_IP,
# PROMETHEUS_ENDPOINT (its port), the namespace store in TEMPORAL_SQLITE_FILE. Its UI is on 8233,
# decoding payloads through TEMPORAL_CODEC_ENDPOINT when set (temporalio/ui's variable).
# It waits (TEMPORAL_SCHEMA_WAIT_SECONDS, default 120) for temporal-schema to have created the
# store: two servers on one SQLite file would corrupt it, and not every engine holds this
# container back until that one-shot has finished.
set -eu
store=${TEMPORAL_SQLITE_FILE:-/var/lib/temporal/temporal.db}
waited=0
until [ -f "$store.ready" ]; do
    if [ "$waited" -ge "${TEMPORAL_SCHEMA_WAIT_SECONDS:-120}" ]; then
        echo "no Temporal store at $store after $waited s: run temporal-schema first" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
exec temporal server start-dev \
    --ip "${BIND_ON_IP:-0.0.0.0}" --port 7233 --ui-port 8233 \
    --metrics-port "${PROMETHEUS_ENDPOINT##*:}" \
    --db-filename "$store" \
    ${TEMPORAL_CODEC_ENDPOINT:+--ui-codec-endpoint "$TEMPORAL_CODEC_ENDPOINT"} \
    --ui-disable-news-fetch --log-format json --log-level warn "$@"
