#!/usr/bin/env bash
# Build (and optionally push) the service images from deploy/Dockerfile. `make images` runs this.
#
#   deploy/build-images.sh                      # CPU set: gateway, executor, inference-cpu, trainer-cpu
#   AZR_IMAGE_SET=gpu deploy/build-images.sh    # GPU set: gateway, executor, inference-gpu, trainer-gpu
#   AZR_IMAGE_SET=all deploy/build-images.sh    # both
#   REGISTRY=ghcr.io/acme TAG=0.1.0 PUSH=1 deploy/build-images.sh
#   deploy/build-images.sh gateway executor     # only these targets
#
# Images are named $REGISTRY/azr-<target>:$TAG (the chart's default repositories and tag).
# The builder is docker (when its daemon answers) or podman (override with BUILDER=docker|podman).
#
# Base image: PYTHON_IMAGE (default python:3.11-slim-bookworm). When it cannot be pulled and
# mmdebstrap is installed, a Debian 12 base with Python 3.11 is bootstrapped locally
# (localhost/azr-base:bookworm, under a minute on a quiet machine) and passed to the Dockerfile instead.
#
# Package index: with podman, the RUN steps see this machine's pip configuration (index URLs,
# find-links, local index directories) and CA bundle through read-only mounts, for the build
# only; nothing of them is written into an image. Set TORCH_CPU_INDEX to add an index for torch's
# CPU build when the local configuration does not carry it (docker builds use it by default).
#
# Each target's build time and size go to build/images/images.tsv (docs/deploy.md lists them).
# DRY_RUN=1 prints the build commands instead of running them (tests/deploy uses it).
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${REGISTRY:-}
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)}
PUSH=${PUSH:-0}
PLATFORM=${PLATFORM:-linux/amd64}
AZR_IMAGE_SET=${AZR_IMAGE_SET:-cpu}
DRY_RUN=${DRY_RUN:-0}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=${LOCAL_BASE:-localhost/azr-base:bookworm}
REPORT_DIR=${REPORT_DIR:-build/images}

log() { echo "build-images: $*" >&2; }

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  case "$AZR_IMAGE_SET" in
    cpu) targets=(gateway executor inference-cpu trainer-cpu) ;;
    gpu) targets=(gateway executor inference-gpu trainer-gpu) ;;
    all) targets=(gateway executor inference-cpu trainer-cpu inference-gpu trainer-gpu) ;;
    *) log "AZR_IMAGE_SET must be cpu, gpu or all (got '$AZR_IMAGE_SET')"; exit 2 ;;
  esac
fi

# A docker client without a daemon (common in CI containers) is no builder.
if [ -z "${BUILDER:-}" ] && [ "$DRY_RUN" = 1 ]; then
  BUILDER=podman
elif [ -z "${BUILDER:-}" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    BUILDER=docker
  elif command -v podman >/dev/null 2>&1; then
    BUILDER=podman
  else
    log "no container builder found (a running docker, or podman); nothing built."
    log "Debian/Ubuntu: apt-get install -y podman mmdebstrap runsc (see docs/deploy.md)."
    exit 1
  fi
fi

# GPU targets are built only on request; here they are linted like the rest of the file.
if [ "$DRY_RUN" = 1 ]; then
  :
elif [ -x .venv/bin/hadolint ] || command -v hadolint >/dev/null 2>&1; then
  hadolint_bin=$( [ -x .venv/bin/hadolint ] && echo .venv/bin/hadolint || command -v hadolint)
  "$hadolint_bin" --config deploy/hadolint.yaml deploy/Dockerfile && log "hadolint: deploy/Dockerfile clean"
fi

base_pullable() {
  $BUILDER image inspect "$PYTHON_IMAGE" >/dev/null 2>&1 && return 0
  timeout 60 $BUILDER pull "$PYTHON_IMAGE" >/dev/null 2>&1
}

bootstrap_base() {
  if $BUILDER image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    log "base: $PYTHON_IMAGE unreachable; using the local $LOCAL_BASE"
    return
  fi
  command -v mmdebstrap >/dev/null 2>&1 || {
    log "base: $PYTHON_IMAGE cannot be pulled and mmdebstrap is missing (apt-get install mmdebstrap)"
    exit 1
  }
  log "base: $PYTHON_IMAGE unreachable; bootstrapping $LOCAL_BASE with mmdebstrap"
  local tarball start
  start=$(date +%s)
  tarball=$(mktemp --suffix=.tar)
  # No manuals, translations or docs (copyright files stay): about 50 MB less in every image.
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$tarball"
  $BUILDER import "$tarball" "$LOCAL_BASE" >/dev/null
  rm -f "$tarball"
  record base "$LOCAL_BASE" "$(( $(date +%s) - start ))"
}

report="$REPORT_DIR/images.tsv"
record() {  # target image seconds: one line of the report, with the image's size
  local bytes
  bytes=$($BUILDER image inspect --format '{{.Size}}' "$2")
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(( bytes / 1000000 ))" >> "$report"
  log "$1: built in ${3}s, $(( bytes / 1000000 )) MB"
}
mkdir -p "$REPORT_DIR"
[ -f "$report" ] || printf 'target\timage\tbuild_s\tsize_mb\n' > "$report"

gpu_only=1
for target in "${targets[@]}"; do
  case "$target" in *-gpu) ;; *) gpu_only=0 ;; esac
done
# torch's CPU build: from this machine's pip sources with podman (mounted below), from
# PyTorch's CPU index with docker, unless TORCH_CPU_INDEX says otherwise.
if [ -z "${TORCH_CPU_INDEX+set}" ]; then
  TORCH_CPU_INDEX=$( [ "$BUILDER" = docker ] && echo https://download.pytorch.org/whl/cpu || true)
fi
build_args=(--build-arg "TORCH_CPU_INDEX=$TORCH_CPU_INDEX")
if [ "$gpu_only" = 0 ]; then
  if [ "$DRY_RUN" != 1 ] && ! base_pullable; then
    bootstrap_base
    PYTHON_IMAGE=$LOCAL_BASE
  fi
  build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
fi

mounts=()
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
if [ "$BUILDER" = podman ]; then
  # This machine's pip configuration, reduced to where packages come from, as a build-time
  # /etc/pip.conf; local index directories and the CA bundle mounted read-only beside it.
  python=${PYTHON:-python3}
  "$python" deploy/pip-sources.py "$workdir/pip.conf" > "$workdir/mounts"
  mounts+=(-v "$workdir/pip.conf:/etc/pip.conf:ro")
  while IFS= read -r mount; do
    [ -n "$mount" ] && mounts+=(-v "$mount:ro")
  done < "$workdir/mounts"
  build_args+=(--isolation chroot --network host --layers)
fi

prefix=${REGISTRY:+${REGISTRY%/}/}
for target in "${targets[@]}"; do
  image="${prefix}azr-${target}:${TAG}"
  log "$target -> $image"
  if [ "$DRY_RUN" = 1 ]; then
    echo "$BUILDER build --platform $PLATFORM ${build_args[*]} ${mounts[*]} -f deploy/Dockerfile --target $target -t $image ."
    continue
  fi
  start=$(date +%s)
  $BUILDER build --platform "$PLATFORM" "${build_args[@]}" "${mounts[@]}" \
    -f deploy/Dockerfile --target "$target" -t "$image" .
  record "$target" "$image" "$(( $(date +%s) - start ))"
  if [ "$PUSH" = 1 ]; then
    $BUILDER push "$image"
  fi
done
log "done (${targets[*]}); times and sizes in $report"
