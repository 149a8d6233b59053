# syntax=docker/dockerfile:1
# One image for every process of the service; the command picks the role:
#   learning-jobs-worker                 Temporal worker (+ /metrics on METRICS_PORT)
#   learning-jobs-api                    notification API (SSE) on API_HOST:API_PORT
#   python -m learning_platform.migrations   one-shot: schema to the head
#   learning-jobs-schedules apply        one-shot: schedules as code (also list/pause/trigger/...)
#   learning-jobs-outbox dead-letters list
# Only runtime dependencies are installed: not the `embedded` extra (PostgreSQL and Temporal
# binaries for `make dev`), not `dev`. Production sets DATABASE_URL and TEMPORAL_ADDRESS.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the two files that name them: this layer is reused until
# pyproject.toml or constraints.txt changes, whatever happens to the code.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > runtime-requirements.txt \
    && pip install -r runtime-requirements.txt -c constraints.txt
# .dockerignore keeps tests, docs and local state out; pyproject.toml says what installs.
COPY . .
RUN pip install --no-deps . && pip check

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
USER 10001:10001
WORKDIR /var/lib/learning-jobs
EXPOSE 9464 8000
# Worker: its /metrics. The API's containers set HEALTHCHECK_URL=http://127.0.0.1:8000/healthz.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "learning_platform.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["learning-jobs-worker"]
