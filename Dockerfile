# One image for every process of the service; the command picks the role:
#   learning-jobs worker                 Temporal worker (+ /metrics on METRICS_PORT)
#   learning-jobs api                    notification API (SSE) on API_HOST:API_PORT
#   learning-jobs migrate                one-shot: schema to the head
#   learning-jobs schedules apply        one-shot: schedules as code (also list/pause/trigger/...)
#   learning-jobs outbox dead-letters list
#   learning-jobs codec-server           decrypts payloads for the Temporal UI and CLI
# Only runtime dependencies are installed: not the `embedded` extra (PostgreSQL and Temporal
# binaries for `make dev`), not `dev`. Production sets DATABASE_URL and TEMPORAL_ADDRESS.
#
# Build arguments:
#   PYTHON_IMAGE  base of both stages: Debian bookworm with Python 3.11 on PATH as `python`,
#                 and apt. Default python:3.11-slim-bookworm; where no registry can be reached,
#                 localhost/debian-python:3.11 from deploy/local/build-base-image.sh.
#   BUILD_ID      this build's identity (e.g. the git commit), WORKER_BUILD_ID in the image:
#                 the Build ID the workers announce for Worker Versioning. Default empty:
#                 unversioned workers, which take every task. With a Build ID, the workers get
#                 no work until their version is made current (docs/deploying.md, rollout).
# No `# syntax=` line: it would make BuildKit fetch a frontend image from a registry, which
# breaks offline builds; the built-in frontend reads this file. Podman: build with
# `--format docker`, the OCI format has no HEALTHCHECK (the compose file sets its own).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The dependencies alone, a stage of its own so that a builder can keep it (`--target deps`,
# as deploy/local/build-images.sh does) and rebuild only the code on top of it.
FROM ${PYTHON_IMAGE} AS deps
# binutils only for `strip` (deploy/image/slim_venv.py); it stays in the build stages.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# The service's venv gets no pip or setuptools: a separate one installs into it.
RUN python -m venv --without-pip /opt/venv && python -m venv /opt/installer
ENV PIP="/opt/installer/bin/pip --python /opt/venv/bin/python"
WORKDIR /src
# Dependencies first, from the two files that name them: this layer is reused until
# pyproject.toml or constraints.txt changes, whatever happens to the code.
COPY pyproject.toml constraints.txt deploy/image/slim_venv.py ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > runtime-requirements.txt \
    && $PIP install --no-compile -r runtime-requirements.txt -c constraints.txt \
    && /opt/venv/bin/python slim_venv.py prune

FROM deps AS build
# .dockerignore keeps tests, docs and local state out; pyproject.toml says what installs.
COPY . .
RUN $PIP install --no-compile --no-deps . \
    && $PIP check \
    && /opt/venv/bin/python slim_venv.py precompile

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/var/lib/learning-jobs \
    API_HOST=0.0.0.0 \
    METRICS_PORT=9464 \
    API_PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app \
    && install -d -o app -g app /var/lib/learning-jobs
COPY --from=build /opt/venv /opt/venv
# Last, so that a new BUILD_ID reuses every layer above.
ARG BUILD_ID=
ENV WORKER_BUILD_ID=${BUILD_ID}
USER 10001:10001
WORKDIR /var/lib/learning-jobs
EXPOSE 9464 8000
# Worker: its /metrics. The API's containers set HEALTHCHECK_URL=http://127.0.0.1:8000/healthz.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["learning-jobs", "healthcheck"]
STOPSIGNAL SIGTERM
CMD ["learning-jobs", "worker"]
