#!/usr/bin/env bash
# Makes a local stand-in for the base image python:3.11.11-slim-bookworm where no image registry can be reached
# (CI here reaches package registries only). Users pull the real image; this is Debian bookworm's own Python 3.11
# (debootstrap --variant=minbase, python3 with pip and venv) shaped like it: `python` and `pip` on PATH, pip allowed
# to install into the system Python, and this host's CA certificates, so that pip inside a build trusts the
# registries this host trusts.
#
#   bash docker/standin-base.sh [TAG]        # needs root, debootstrap and a running Docker engine
set -euo pipefail
TAG=${1:-python:3.11.11-slim-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates bookworm "$root" "$MIRROR" \
    >"$root.log" 2>&1 || { tail -20 "$root.log"; exit 1; }
rm -f "$root.log"

# As in the official image: `python` and `pip` on PATH, and pip may install outside a virtual environment.
ln -s /usr/bin/python3 "$root/usr/local/bin/python"
ln -s /usr/bin/pip3 "$root/usr/local/bin/pip"
rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED

# Trust what this host trusts: its CA bundle, and pip told to use it (pip in a virtual environment otherwise uses
# the certificates it vendors, which do not hold a CA that this host's network may put in between).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"

# As Debian's official images do (/etc/apt/apt.conf.d/docker-clean): apt keeps no package cache, so that an
# `apt-get install` in a Dockerfile leaves no 78 MB of pkgcache.bin/srcpkgcache.bin in its layer.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["python3"]' \
    - "$TAG" >/dev/null
echo "stand-in base image $TAG made from Debian bookworm (python $(chroot "$root" python3 -c 'import platform; print(platform.python_version())'))"
