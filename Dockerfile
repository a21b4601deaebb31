# SocialPlay AI on Ray Serve (CPU image; for GPUs start from a CUDA base and install the
# matching torch build instead of the CPU wheel).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    RAY_AUTH_MODE=disabled \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app

# torch first and pinned, from the CPU index: a plain resolve pulls a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md requirements-data.txt ./
COPY configs/ configs/
COPY models/ models/
COPY deployments/ deployments/
COPY storage/ storage/
RUN pip install . && pip install --no-deps --require-hashes -r requirements-data.txt

COPY serve_config.yaml ./

# Checkpoints for the transformer paths are mounted, never downloaded at run time:
#   docker run -v /srv/models:/models ... and point serve_config.yaml args at /models/...
EXPOSE 8000 8265
# serve_config.yaml binds 127.0.0.1; in a container bind all interfaces instead.
RUN sed -i 's/host: 127.0.0.1/host: 0.0.0.0/' serve_config.yaml
CMD ["serve", "run", "serve_config.yaml"]
