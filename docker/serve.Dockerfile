# gan-digits: generating digits from an exported generator.onnx. The light install only: no TensorFlow inside.
#
#   docker build -f docker/serve.Dockerfile -t mnist-gan-serve .
#   docker run -v "$PWD/runs:/runs" mnist-gan-serve generate --model /runs/mnist/generator.onnx --out /runs/mnist/digits.png

# Stage 1: wheels of the package and its light dependencies.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY job/ job/
COPY serving/ serving/
RUN pip wheel --wheel-dir /wheels .

# Stage 2: just those wheels installed, no build tools, no sources.
FROM python:3.11.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# DL3013: only the wheels built in stage 1 can be installed here (--no-index): their versions are fixed there.
# hadolint ignore=DL3013
RUN pip install --no-index --find-links=/wheels mnist-gan \
    && rm -rf /wheels \
    && useradd --create-home --uid 1000 --user-group gan
USER 1000:1000
WORKDIR /runs
ENTRYPOINT ["gan-digits"]
CMD ["--help"]
