#!/bin/sh
# One-shot (temporalio/admin-tools), once the server answers: the namespace and the custom
# search attributes the workflows set (SEARCH_ATTRIBUTES="Name=Type ..."; the same list as
# learning_platform/devstack.py). Safe to run again.
#
# Every step is retried until TEMPORAL_WAIT_SECONDS (default 180) have passed since the start,
# then it exits 1 naming the step and the CLI's last words: an engine may start this before the
# server is healthy, a new namespace reaches the frontend's cache within seconds, not at once,
# and on a loaded host a CLI call after the first can still miss its connection deadline
# ("context deadline exceeded"); the engine's restart policy is not the retry.
set -eu

limit=${TEMPORAL_WAIT_SECONDS:-180}
started=$(date +%s)

# until_done STEP COMMAND...: COMMAND again each second until it succeeds; its output is shown.
until_done() {
    step=$1
    shift
    until output=$("$@" 2>&1); do
        if [ $(($(date +%s) - started)) -ge "$limit" ]; then
            echo "gave up after $limit s: $step at $TEMPORAL_ADDRESS failed: $output" >&2
            exit 1
        fi
        echo "waiting for $step: $(printf '%s\n' "$output" | head -n 1)"
        sleep 1
    done
    [ -z "$output" ] || printf '%s\n' "$output"
}

ensure_namespace() {
    # Describe first: on a namespace that exists, create would fail ("already exists").
    temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1 ||
        temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE" \
            --retention "${TEMPORAL_RETENTION:-7d}"
}

ensure_search_attribute() {
    listed=$(temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE") || return 1
    if printf '%s\n' "$listed" | grep -qw "$1"; then
        echo "search attribute $1 exists"
    else
        temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
            --name "$1" --type "$2"
    fi
}

until_done "temporal to answer" temporal operator cluster health
until_done "namespace $TEMPORAL_NAMESPACE" ensure_namespace
for pair in $SEARCH_ATTRIBUTES; do
    until_done "search attribute ${pair%%=*}" ensure_search_attribute "${pair%%=*}" "${pair#*=}"
done
echo "namespace $TEMPORAL_NAMESPACE ready"
