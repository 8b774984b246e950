#!/usr/bin/env bash
# Build (and optionally push) the service images from deploy/Dockerfile. `make images` runs this.
#
#   deploy/build-images.sh                      # GPU set: gateway, executor, inference-gpu, trainer-gpu
#   AZR_IMAGE_SET=cpu deploy/build-images.sh    # CPU set: gateway, executor, inference-cpu, trainer-cpu
#   AZR_IMAGE_SET=all deploy/build-images.sh    # both
#   REGISTRY=ghcr.io/acme TAG=0.1.0 PUSH=1 deploy/build-images.sh
#
# Images are named $REGISTRY/azr-<target>:$TAG (the chart's default repositories). The builder is
# `docker buildx` when present, else `docker build`, else `podman build` (override with BUILDER=...).
# PLATFORM (default linux/amd64) is passed to the builder. Extra arguments go to every build.
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${REGISTRY:-}
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)}
PUSH=${PUSH:-0}
PLATFORM=${PLATFORM:-linux/amd64}
AZR_IMAGE_SET=${AZR_IMAGE_SET:-gpu}

case "$AZR_IMAGE_SET" in
  gpu) targets=(gateway executor inference-gpu trainer-gpu) ;;
  cpu) targets=(gateway executor inference-cpu trainer-cpu) ;;
  all) targets=(gateway executor inference-cpu trainer-cpu inference-gpu trainer-gpu) ;;
  *) echo "build-images: AZR_IMAGE_SET must be gpu, cpu or all (got '$AZR_IMAGE_SET')" >&2; exit 2 ;;
esac

if [ -z "${BUILDER:-}" ]; then
  if command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
    BUILDER="docker buildx build"
  elif command -v docker >/dev/null 2>&1; then
    BUILDER="docker build"
  elif command -v podman >/dev/null 2>&1; then
    BUILDER="podman build"
  else
    echo "build-images: no container builder found (docker or podman); nothing built." >&2
    echo "build-images: CI checks the Dockerfile statically (tests/deploy/test_dockerfile.py)." >&2
    exit 1
  fi
fi

prefix=${REGISTRY:+${REGISTRY%/}/}
for target in "${targets[@]}"; do
  image="${prefix}azr-${target}:${TAG}"
  echo "build-images: $target -> $image"
  # shellcheck disable=SC2086  # BUILDER is a command plus its sub-command
  $BUILDER --platform "$PLATFORM" -f deploy/Dockerfile --target "$target" -t "$image" "$@" .
  if [ "$PUSH" = 1 ]; then
    case "$BUILDER" in
      podman*) podman push "$image" ;;
      *) docker push "$image" ;;
    esac
  fi
done
echo "build-images: done (${targets[*]})"
