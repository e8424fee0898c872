#!/usr/bin/env bash
# A minimal Debian base image built from Debian's packages alone, for building the CPU image
# where no container registry can be reached (CI, air-gapped sites):
#   debootstrap --variant=minbase -> podman import -> localhost/orgseg-base:bookworm
# Idempotent: an existing image is kept. Needs root, debootstrap and podman.
set -euo pipefail

SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
IMAGE="${BASE_IMAGE:-localhost/orgseg-base:${SUITE}}"
WORK="${WORK:-/var/tmp/orgseg-rootfs-${SUITE}}"

if podman image exists "$IMAGE"; then
    echo "base image $IMAGE exists"
    exit 0
fi
rm -rf "$WORK"
debootstrap --variant=minbase "$SUITE" "$WORK" "$MIRROR"
# apt in the image uses the same mirror; drop caches and logs from the bootstrap
rm -rf "$WORK"/var/cache/apt/archives/*.deb "$WORK"/var/lib/apt/lists/* "$WORK"/var/log/*
tar -C "$WORK" --numeric-owner -c . | podman import \
    --change 'CMD ["/bin/bash"]' - "$IMAGE"
rm -rf "$WORK"
echo "base image $IMAGE imported"
