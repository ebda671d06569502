#!/usr/bin/env bash
# The container stage of CI (.ci/run calls it after the test suite): builds the images of docker/ and runs them for
# real with a Docker engine (tests/containers/), then prints each image's size, its Python packages as a CycloneDX
# SBOM summary (the SBOMs go to GAN_CI_REPORTS, default /tmp/gan-ci-reports) and the audit of the locks.
#
#   bash docker/ci-stage.sh        # as root, after README's test command made .venv
#
# It starts dockerd when no engine answers (and stops it again, also on failure); where none can be started it skips
# loudly, except in CI (CI=true), where it fails. Where the base image cannot be pulled it makes a stand-in
# (docker/standin-base.sh). GAN_DOCKER_ROOT: dockerd's data root (default /var/lib/docker; a fresh folder gives a
# cold run: no base image, no layer cache).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=python:3.11.11-slim-bookworm
DATA_ROOT=${GAN_DOCKER_ROOT:-/var/lib/docker}
VENV_BIN=$PWD/.venv/bin
REPORTS=${GAN_CI_REPORTS:-/tmp/gan-ci-reports} # the SBOMs
export DOCKER_BUILDKIT=0 # Debian's docker.io has no buildx plugin; the classic builder does all these files need
started=$(date +%s)

say() { echo "[container stage] $*"; }

timed() { # timed STEP COMMAND...: run the command, then say how long the step took
    local step=$1 start=$SECONDS
    shift
    "$@"
    say "$step: $((SECONDS - start)) s"
}

skip_or_fail() {
    printf '\n%s\n' "######## CONTAINER STAGE NOT RUN: $1 ########"
    if [ "${CI:-}" = true ]; then exit 1; fi
    exit 0
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

dockerd_pid=""
stop_dockerd() {
    if [ -n "$dockerd_pid" ]; then
        say "stopping the dockerd it started (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
}
trap stop_dockerd EXIT

start_dockerd() {
    local driver log=/tmp/gan-ci-dockerd.log
    for driver in overlay2 vfs; do # vfs only where overlay cannot mount
        say "starting dockerd ($driver, data root $DATA_ROOT, log $log)"
        dockerd --storage-driver "$driver" --data-root "$DATA_ROOT" >"$log" 2>&1 &
        dockerd_pid=$!
        for _ in $(seq 60); do
            if engine_answers; then return 0; fi
            if ! kill -0 "$dockerd_pid" 2>/dev/null; then break; fi
            sleep 1
        done
        tail -5 "$log"
        stop_dockerd
        dockerd_pid=""
    done
    return 1
}

# Debian's engine and debootstrap (for the stand-in base), where they are missing and this user may install them.
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        say "installing Debian's docker.io and debootstrap"
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io debootstrap; } >/dev/null 2>&1 \
            || say "could not install docker.io and debootstrap"
    fi
fi
if ! command -v docker >/dev/null; then skip_or_fail "no docker client (apt-get install docker.io)"; fi
if ! engine_answers; then
    if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then skip_or_fail "no Docker engine answers, and this user cannot start dockerd"; fi
    start_dockerd || skip_or_fail "dockerd could not be started (see /tmp/gan-ci-dockerd.log)"
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if ! timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE cannot be pulled here: making the stand-in from Debian's packages"
        timed "stand-in base" bash docker/standin-base.sh "$BASE_IMAGE"
    fi
fi

say "building mnist-gan-serve, mnist-gan-server (over it) and mnist-gan-train (TF_VARIANT=cpu)"
build() { docker build -q --network host "$@" . >/dev/null; }
timed "build mnist-gan-serve" build -f docker/serve.Dockerfile -t mnist-gan-serve:latest
timed "build mnist-gan-server" build -f docker/server.Dockerfile -t mnist-gan-server:latest
timed "build mnist-gan-train" build --build-arg TF_VARIANT=cpu -f docker/train.Dockerfile -t mnist-gan-train:latest

say "running the images (tests/containers)"
GAN_CONTAINER_STAGE=1 timed "container tests" "$VENV_BIN/python" -m pytest -p no:cacheprovider -n 0 --durations=0 \
    tests/containers

say "image sizes"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^(mnist-gan|python:3.11)"
size() { docker image inspect -f '{{.Size}}' "$1"; }
say "mnist-gan-server adds $((($(size mnist-gan-server:latest) - $(size mnist-gan-serve:latest)) / 1000000)) MB to mnist-gan-serve"
mkdir -p "$REPORTS"
sboms_and_audit() {
    "$VENV_BIN/python" docker/report.py sbom mnist-gan-serve:latest "$REPORTS/mnist-gan-serve.cdx.json"
    "$VENV_BIN/python" docker/report.py sbom mnist-gan-server:latest "$REPORTS/mnist-gan-server.cdx.json"
    "$VENV_BIN/python" docker/report.py sbom mnist-gan-train:latest "$REPORTS/mnist-gan-train-cpu.cdx.json"
    "$VENV_BIN/python" docker/report.py audit docker/locks/*.txt
}
timed "SBOMs and audit" sboms_and_audit
say "done in $(($(date +%s) - started)) s"
