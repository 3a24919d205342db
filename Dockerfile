# syntax=docker/dockerfile:1
#
# Images for the musicrec platform, one multi-stage Dockerfile with two final targets:
#   docker build --target api -t musicrec-api .   # FastAPI service (default target)
#   docker build --target ui  -t musicrec-ui  .   # Streamlit UI
# The api image also runs the MLflow tracking server in docker-compose.yml (same mlflow version
# as the client). No secrets are used at build time: configuration comes from the environment.
#
# BASE_IMAGE: any Debian-based image with python3 and python3-venv. The default is the public
# Python image; `make images` (scripts/build-images.sh) passes a Debian base it bootstraps
# locally with mmdebstrap when no registry is reachable. Dependencies are installed from the
# hashed lock requirements-runtime.lock, so every build gets the same versions.

ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim

# ---------------------------------------------------------------------------------------------
# builder: install the locked dependencies and the musicrec wheel into /opt/venv
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

# Compilers for dependencies that build from source (hnswlib ships no wheels); a bare Debian
# base also needs the Python headers: BUILD_PACKAGES="build-essential python3-dev".
ARG BUILD_PACKAGES=build-essential
# Package index of the build host, passed by scripts/build-images.sh from the host's pip
# configuration; unset means PyPI. Only the builder stage sees them.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Debian package versions are not pinned: the base image already fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ${BUILD_PACKAGES} \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
# Dependencies first (their layer is reused while only the source changes), hash-checked.
COPY requirements-runtime.lock ./
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r requirements-runtime.lock

COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-deps .

# ---------------------------------------------------------------------------------------------
# runtime: slim base, non-root user, only the virtual environment from the builder
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

# libgomp1: OpenMP runtime used by implicit's ALS kernels.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 musicrec \
    && useradd --system --uid 10001 --gid musicrec --create-home --home-dir /home/musicrec \
        --shell /usr/sbin/nologin musicrec \
    && mkdir -p /models /mlflow/db /mlflow/artifacts \
    && chown -R musicrec:musicrec /models /mlflow

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
WORKDIR /home/musicrec

# ---------------------------------------------------------------------------------------------
# ui: Streamlit front end talking to the API
# ---------------------------------------------------------------------------------------------
FROM runtime AS ui

ENV MUSICREC_API_URL=http://api:8000 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

EXPOSE 8501

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=3)"]

CMD ["sh", "-c", "exec musicrec ui --api-url \"$MUSICREC_API_URL\" --host 0.0.0.0 --port 8501"]

# ---------------------------------------------------------------------------------------------
# api: FastAPI recommendation service (last stage, so it is also the default build target)
# ---------------------------------------------------------------------------------------------
FROM runtime AS api

# MUSICREC_MODEL: a model directory (mount model artifacts at /models) or a registry URI such
# as models:/musicrec@champion (then set MLFLOW_TRACKING_URI). With several workers the
# Prometheus client aggregates metrics through PROMETHEUS_MULTIPROC_DIR, which is emptied at
# start-up so counters of a previous container life are not reported again.
ENV MUSICREC_MODEL=/models/current \
    MUSICREC_WORKERS=2 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]

CMD ["sh", "-c", "mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && find \"$PROMETHEUS_MULTIPROC_DIR\" -mindepth 1 -delete && exec musicrec serve --model \"$MUSICREC_MODEL\" --host 0.0.0.0 --port 8000 --workers \"$MUSICREC_WORKERS\""]
