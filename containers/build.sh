#!/usr/bin/env bash
# Build the orgseg image with podman (or docker: ENGINE=docker).
#   containers/build.sh gpu   -> orgseg:gpu  (CUDA runtime base from its registry)
#   containers/build.sh cpu   -> orgseg:cpu  (BASE_IMAGE, default the Debian base that
#                                containers/bootstrap-base.sh imports without any registry)
# The host's pip sources travel into the build when present: a CA bundle (TLS-inspecting
# proxies), local wheel folders and simple indexes (PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

VARIANT="${1:-gpu}"
ENGINE="${ENGINE:-podman}"
TAG="${TAG:-localhost/orgseg:${VARIANT}}"
args=(-f containers/Dockerfile -t "$TAG")
case "$VARIANT" in
    gpu) [[ -n "${BASE_IMAGE:-}" ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE") ;;
    cpu) args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE:-localhost/orgseg-base:bookworm}") ;;
    *) echo "usage: $0 gpu|cpu" >&2; exit 2 ;;
esac
[[ -n "${TORCH_INDEX_URL:-}" ]] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

if [[ "$ENGINE" == podman ]]; then
    # chroot isolation and explicit ulimits: builds inside unprivileged CI containers too
    args+=(--format docker --isolation chroot --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
    host_ca="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
    if [[ -f "$host_ca" ]]; then
        args+=(--volume "$host_ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
    fi
    links=() indexes=()
    for dir in ${HOST_PIP_FIND_LINKS:-/opt/wheels}; do
        [[ -d "$dir" ]] && args+=(--volume "$dir:$dir:ro") && links+=("$dir")
    done
    for dir in ${HOST_PIP_INDEXES:-/opt/pypi /opt/pypi-more}; do
        [[ -d "$dir/simple" ]] && args+=(--volume "$dir:$dir:ro") && indexes+=("file://$dir/simple")
    done
    ((${#links[@]})) && args+=(--build-arg "PIP_FIND_LINKS=${links[*]}")
    ((${#indexes[@]})) && args+=(--build-arg "PIP_EXTRA_INDEX_URL=${indexes[*]}")
fi
echo "+ $ENGINE build ${args[*]} ."
exec "$ENGINE" build "${args[@]}" .
