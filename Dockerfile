# omnistream worker / sink image.
#   docker build -t omnistream:0.1.0 .
#   docker run --rm omnistream:0.1.0 --help
#   docker run -e OMNISTREAM_KAFKA_BOOTSTRAP=broker:9092 -e OMNISTREAM_PII_SECRET=... omnistream:0.1.0   # a worker
#   docker run ... omnistream:0.1.0 sink                                                                  # the sink
# Every setting is an OMNISTREAM_* environment variable (README.md, docs/operations.md).

# --- build: install the pinned dependencies, then the project, into a venv that is copied as a whole ----------
# The base image is pinned to a patch release (override with --build-arg PYTHON_IMAGE=python:...@sha256:... to
# pin a digest); the dependencies come from requirements.lock (`make lock`), the versions the test suite ran.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/omnistream
WORKDIR /src
# Dependencies first: this layer is reused until requirements.lock changes.
COPY requirements.lock ./
RUN /opt/omnistream/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY agents ./agents
COPY sinks ./sinks
RUN /opt/omnistream/bin/pip install --no-deps . \
 && /opt/omnistream/bin/omnistream --help > /dev/null

# --- runtime ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="omnistream" \
      org.opencontainers.image.description="Streaming omnichannel customer-event pipeline (Faust workers, DuckDB sink)" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed uid/gid so that volume permissions (Kubernetes fsGroup, compose named volumes) are predictable.
ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" omnistream \
 && useradd --system --uid "${UID}" --gid omnistream --home-dir /home/omnistream --create-home \
            --shell /usr/sbin/nologin omnistream \
 && mkdir -p /var/lib/omnistream \
 && chown omnistream:omnistream /var/lib/omnistream

COPY --from=build /opt/omnistream /opt/omnistream

ENV PATH=/opt/omnistream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMNISTREAM_STATE_DIR=/var/lib/omnistream \
    OMNISTREAM_METRICS_PORT=9464 \
    OMNISTREAM_WEB_PORT=6066

# Worker state (per-worker data dirs) and the sink's DuckDB file live here. A named volume / PVC keeps them
# across restarts; the image creates the directory owned by the app user so a fresh volume is writable.
VOLUME ["/var/lib/omnistream"]
WORKDIR /var/lib/omnistream

USER omnistream:omnistream

# 9464: Prometheus /metrics (worker N serves on 9464 + N; in a container N is 0). 6066: Faust's web port.
EXPOSE 9464 6066

# slim has no curl: ask /healthz (the process's own loop beats) with the standard library. A worker serves on
# OMNISTREAM_METRICS_PORT + its worker id, the sink on OMNISTREAM_SINK_METRICS_PORT (default metrics port + 90)
# unless started with --metrics-port: the first of those ports that answers decides.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request, urllib.error\nbase = int(os.environ.get('OMNISTREAM_METRICS_PORT', '9464'))\nports = [base + int(os.environ.get('OMNISTREAM_WORKER_ID', '0')), int(os.environ.get('OMNISTREAM_SINK_METRICS_PORT', base + 90)), base]\nfor port in ports:\n    try:\n        urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4); sys.exit(0)\n    except urllib.error.HTTPError: sys.exit(1)\n    except OSError: pass\nsys.exit(1)"]

# SIGTERM (docker stop, Kubernetes) lets the worker finish its batch, flush and commit: give it the time
# (docker stop -t 60, compose stop_grace_period, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["omnistream"]
CMD ["worker"]
