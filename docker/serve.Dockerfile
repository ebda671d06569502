# gan-digits: generating digits from an exported generator.onnx. The light install only: no TensorFlow inside.
#
#   docker build -f docker/serve.Dockerfile -t mnist-gan-serve .
#   docker run -v "$PWD/runs:/runs" mnist-gan-serve generate --model /runs/mnist/generator.onnx --out /runs/mnist/digits.png
#
# BASE_IMAGE: any Python 3.11 image of the same layout, e.g. a mirror pinned by digest
# (--build-arg BASE_IMAGE=registry.example/python:3.11.11-slim-bookworm@sha256:...). Both stages must use the same.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

# Stage 1: a virtual environment holding exactly the locked dependencies (every file's hash checked) and the package.
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The base's pip installs into the environment, which gets none of its own: pip is no part of the image.
RUN python -m venv --without-pip /opt/venv
COPY docker/locks/serve.txt /tmp/lock.txt
RUN pip --python /opt/venv/bin/python install --no-compile --require-hashes -r /tmp/lock.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY job/ job/
COPY serving/ serving/
# DL3013: "." is this package itself; its dependencies are the lock's, installed above (hence --no-deps).
# hadolint ignore=DL3013
RUN pip --python /opt/venv/bin/python install --no-compile --no-deps .
# Lean: the packages' own test suites go, and so do onnxruntime's model-optimisation tools (transformers,
# quantization, tools: never imported to run a model); only the modules gan-digits imports are byte-compiled (here,
# since a read-only root filesystem could not keep them at run time), the rest stays source only.
RUN find /opt/venv -depth -type d -name tests -exec rm -rf {} + \
    && rm -r /opt/venv/lib/python3.11/site-packages/onnxruntime/transformers \
        /opt/venv/lib/python3.11/site-packages/onnxruntime/quantization \
        /opt/venv/lib/python3.11/site-packages/onnxruntime/tools \
    && /opt/venv/bin/python -c "import serving.cli, serving.model, numpy, onnxruntime, PIL.Image"

# Stage 2: the base and that virtual environment, nothing else: no wheels, no sources, no build files.
FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 1000 --user-group gan
USER 1000:1000
WORKDIR /runs
ENTRYPOINT ["gan-digits"]
CMD ["--help"]
