# syntax=docker/dockerfile:1
#
# Images for the musicrec platform, one multi-stage Dockerfile with two final targets:
#   docker build --target api -t musicrec-api .   # FastAPI service (default target)
#   docker build --target ui  -t musicrec-ui  .   # Streamlit UI
# The api image also runs the MLflow tracking server in docker-compose.yml (same mlflow version
# as the client). No secrets are used at build time: configuration comes from the environment.

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------------------------
# builder: compile the wheel and install it with all runtime dependencies into /opt/venv
# ---------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers for dependencies that may build from source (e.g. hnswlib). Debian package versions
# are not pinned: the slim base tag already fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src ./src

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip wheel \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install "$(ls /wheels/*.whl)[postgres]"

# ---------------------------------------------------------------------------------------------
# runtime: slim base, non-root user, only the virtual environment from the builder
# ---------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime

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

CMD ["sh", "-c", "exec musicrec ui --api-url \"$MUSICREC_API_URL\" --port 8501"]

# ---------------------------------------------------------------------------------------------
# api: FastAPI recommendation service (last stage, so it is also the default build target)
# ---------------------------------------------------------------------------------------------
FROM runtime AS api

# MUSICREC_MODEL: a model directory (mount model artifacts at /models) or a registry URI such
# as models:/musicrec-als@champion (then set MLFLOW_TRACKING_URI). With several workers the
# Prometheus client aggregates metrics through PROMETHEUS_MULTIPROC_DIR, which is emptied at
# start-up so counters of a previous container life are not reported again.
ENV MUSICREC_MODEL=/models/current \
    MUSICREC_WORKERS=2 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]

CMD ["sh", "-c", "mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && find \"$PROMETHEUS_MULTIPROC_DIR\" -mindepth 1 -delete && exec musicrec serve --model \"$MUSICREC_MODEL\" --host 0.0.0.0 --port 8000 --workers \"$MUSICREC_WORKERS\""]
