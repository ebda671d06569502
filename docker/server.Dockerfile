# gan-digits serve: the generator behind the Open Inference Protocol (KServe's v2, REST and gRPC) on KServe's
# ModelServer. The serve image (docker/serve.Dockerfile) is its base: one layer adds the server extra's packages to
# that image's virtual environment. No TensorFlow inside.
#
#   docker build -f docker/serve.Dockerfile -t mnist-gan-serve .
#   docker build -f docker/server.Dockerfile -t mnist-gan-server .
#   docker run -p 8080:8080 -p 8081:8081 -v "$PWD/runs:/runs:ro" mnist-gan-server    # serves /runs/mnist/generator.onnx
#
# SERVE_IMAGE: the serve image to add to, e.g. one pinned by digest.
ARG SERVE_IMAGE=mnist-gan-serve:latest
FROM ${SERVE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
USER 0:0
COPY docker/locks/server.txt /tmp/lock.txt
# The lock holds the serve image's packages too (pip keeps those of the same version) and leaves out what KServe
# requires but the server never imports (docker/locks/refresh.py), hence --no-deps. Then, as in the serve image: no
# test suites, and only the modules the server imports byte-compiled; also no kubernetes.aio (KServe's client is
# synchronous; the server makes no Kubernetes call at all).
RUN pip --python /opt/venv/bin/python install --no-compile --no-deps --require-hashes -r /tmp/lock.txt \
    && rm /tmp/lock.txt \
    && find /opt/venv -depth -type d -name tests -exec rm -rf {} + \
    && rm -r /opt/venv/lib/python3.11/site-packages/kubernetes/aio \
    && /opt/venv/bin/python -c "import serving.server, serving.cli, serving.triton"
USER 1000:1000
WORKDIR /runs
EXPOSE 8080 8081
ENTRYPOINT ["gan-digits"]
CMD ["serve", "--model", "/runs/mnist/generator.onnx"]
