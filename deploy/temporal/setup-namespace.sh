#!/bin/sh
# One-shot (temporalio/admin-tools), once the server answers: the namespace and the custom
# search attributes the workflows set (SEARCH_ATTRIBUTES="Name=Type ..."; the same list as
# learning_platform/devstack.py). Safe to run again.
set -eu

# Bounded: TEMPORAL_WAIT_SECONDS (default 180), for engines that start this before the server
# is healthy as well as for a server that never comes up.
waited=0
until temporal operator cluster health >/dev/null 2>&1; do
    if [ "$waited" -ge "${TEMPORAL_WAIT_SECONDS:-180}" ]; then
        echo "temporal at $TEMPORAL_ADDRESS did not answer within $waited s" >&2
        exit 1
    fi
    echo "waiting for temporal at $TEMPORAL_ADDRESS"
    sleep 2
    waited=$((waited + 2))
done

if ! temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
    temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE" \
        --retention "${TEMPORAL_RETENTION:-7d}"
fi
# A new namespace reaches every frontend's cache within seconds, not at once.
until existing=$(temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE" 2>/dev/null); do
    echo "waiting for namespace $TEMPORAL_NAMESPACE"
    sleep 1
done

for pair in $SEARCH_ATTRIBUTES; do
    name=${pair%%=*}
    kind=${pair#*=}
    if echo "$existing" | grep -qw "$name"; then
        echo "search attribute $name exists"
    else
        temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
            --name "$name" --type "$kind"
    fi
done
echo "namespace $TEMPORAL_NAMESPACE ready"
