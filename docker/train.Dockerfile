# The training job on a GPU (or the CPU when no GPU is visible).
#
# The base is plain Python, not tensorflow/tensorflow:*-gpu: those images were reported to ship cuDNN 8.9 while
# TensorFlow >= 2.18 loads cuDNN 9, so the GPU goes unseen. `tensorflow[and-cuda]` brings the CUDA 12 and cuDNN 9
# wheels that match the TensorFlow release; the host only needs the NVIDIA driver and container toolkit.
#
#   docker build -f docker/train.Dockerfile -t mnist-gan-train .
#   docker run --gpus all -v "$PWD/runs:/runs" mnist-gan-train train --out /runs/mnist
FROM python:3.11.11-slim-bookworm

# tini is PID 1: it forwards SIGTERM to the job (which then checkpoints and exits) and reaps zombies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/tmp/keras

WORKDIR /src
COPY pyproject.toml README.md ./
COPY job/ job/
COPY serving/ serving/
# DL3013: "." is this package itself; TensorFlow is pinned to the release whose CUDA wheels we chose, and the rest is
# left to pip's resolver on purpose (the project pins nothing it does not need).
# hadolint ignore=DL3013
RUN pip install ".[train]" "tensorflow[and-cuda]==2.21.0"

# A non-root user; /runs is the output volume (checkpoints, samples, metrics, the exported models).
RUN useradd --create-home --uid 1000 --user-group gan \
    && mkdir -p /runs \
    && chown gan:gan /runs
USER 1000:1000
WORKDIR /runs
VOLUME ["/runs"]

# Configure with GAN_* variables (GAN_OUT, GAN_STEPS, GAN_DIGIT, GAN_DATA, ...) or with flags after `train`.
ENV GAN_OUT=/runs/mnist
ENTRYPOINT ["/usr/bin/tini", "--", "gan-job"]
CMD ["train"]
