# The training job on a GPU (or the CPU when no GPU is visible).
#
# The base is plain Python, not tensorflow/tensorflow:*-gpu: those images were reported to ship cuDNN 8.9 while
# TensorFlow >= 2.18 loads cuDNN 9, so the GPU goes unseen. `tensorflow[and-cuda]` brings the CUDA 12 and cuDNN 9
# wheels that match the TensorFlow release; the host only needs the NVIDIA driver and container toolkit.
#
#   docker build -f docker/train.Dockerfile -t mnist-gan-train .
#   docker build -f docker/train.Dockerfile --build-arg TF_VARIANT=cpu -t mnist-gan-train .    # CPU only, smaller
#   docker run --gpus all -v "$PWD/runs:/runs" mnist-gan-train train --out /runs/mnist
#
# BASE_IMAGE: any Python 3.11 image of the same layout, e.g. a mirror pinned by digest (see serve.Dockerfile).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

# Stage 1: a virtual environment holding exactly the locked dependencies (every file's hash checked) and the package.
FROM ${BASE_IMAGE} AS build
# cuda: tensorflow[and-cuda]; cpu: tensorflow-cpu of the same version (docker/locks/train-*.txt).
ARG TF_VARIANT=cuda
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The base's pip installs into the environment, which gets none of its own: pip is no part of the image.
RUN python -m venv --without-pip /opt/venv
COPY docker/locks/train-${TF_VARIANT}.txt /tmp/lock.txt
RUN pip --python /opt/venv/bin/python install --require-hashes -r /tmp/lock.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY job/ job/
COPY serving/ serving/
# DL3013: "." is this package itself; its dependencies are the lock's, installed above (hence --no-deps: the cpu
# lock's tensorflow-cpu provides the `tensorflow` modules that the package requires under that name).
# hadolint ignore=DL3013
RUN pip --python /opt/venv/bin/python install --no-deps .

# Stage 2: the base, tini and that virtual environment: no wheels, no sources, no build files.
FROM ${BASE_IMAGE}

# tini is PID 1: it forwards SIGTERM to the job (which then checkpoints and exits) and reaps zombies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/venv /opt/venv
# ORT_DISABLE_TELEMETRY: the export checks itself with onnxruntime, whose telemetry has no place in a batch job.
ENV PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/tmp/keras \
    ORT_DISABLE_TELEMETRY=1

# A non-root user; /runs is the output volume (checkpoints, samples, metrics, the exported models).
RUN useradd --create-home --uid 1000 --user-group gan \
    && mkdir -p /runs \
    && chown gan:gan /runs
USER 1000:1000
WORKDIR /runs
VOLUME ["/runs"]

# Configure with GAN_* variables (GAN_OUT, GAN_STEPS, GAN_DIGIT, GAN_DATA, GAN_ARCH, ...) or with flags after `train`.
ENV GAN_OUT=/runs/mnist
# The quality classifier is cached on the volume, once for every run and pod that shares it (the image's user may
# have no home folder to hold a cache of its own).
ENV GAN_QUALITY_CACHE=/runs/.quality-cache
ENTRYPOINT ["/usr/bin/tini", "--", "gan-job"]
CMD ["train"]
