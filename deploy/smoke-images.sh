#!/usr/bin/env bash
# `make images-smoke` (after `make images`): start each CPU image the way the chart does and
# check it does its job. One summary line per image; exit status 1 if any failed.
#
#   executor       the attack suite and sandbox-semantics tests of tests/executor/, as they are in
#                  the tree, against the HTTP API of the executor the image starts (2 workers,
#                  Redis inside the container)
#   gateway        starts on SQLite; /readyz and the dashboard answer
#   inference-cpu  loads the default model (the host's converted copy, mounted read-only) and
#                  answers one /v1/solve
#   trainer-cpu    applies one reward batch from a Redis inside the container
#
# Every container runs as the chart asks: uid 10001, a read-only root file system, /tmp and /data
# writable volumes, no capabilities, no privilege escalation; under gVisor (the chart's
# RuntimeClass handler, values.yaml gvisor.handler) with no network: each check runs inside its
# container and talks to the service over the container's own loopback.
#
#   AZR_SMOKE_IMAGES="gateway executor" deploy/smoke-images.sh    # a subset
set -uo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)}
REGISTRY=${REGISTRY:-}
RUNTIME=${AZR_SMOKE_RUNTIME:-runsc}
AZR_UID=10001
PYTHON=${PYTHON:-.venv/bin/python}
read -r -a images <<< "${AZR_SMOKE_IMAGES:-executor gateway inference-cpu trainer-cpu}"
prefix=${REGISTRY:+${REGISTRY%/}/}

log() { echo "images-smoke: $*" >&2; }

if command -v podman >/dev/null 2>&1; then
  ENGINE=podman
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  log "neither podman nor a running docker; nothing to run"; exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# pytest for the executor suite, mounted into that container only (the image carries no tests).
if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$work/pylib" \
    --constraint requirements/constraints.txt pytest pytest-timeout > "$work/pip.log" 2>&1; then
  cat "$work/pip.log" >&2; log "could not install pytest for the executor suite"; exit 1
fi

# The converted default model of the host's data dir (`azr model prepare`; make setup does it).
model=$("$PYTHON" - <<'EOF'
from azr.common.checkpoints import version_dir
from azr.settings import get_settings
from azr.common.model import default_model_root

print(version_dir(default_model_root(get_settings().data_dir), 0))
EOF
)

# One token for the API and the services' data routes, as the chart's Secret gives both; without
# it the services refuse to listen on 0.0.0.0 (the address of the image's CMD).
token="smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
summary=()
failed=0
for target in "${images[@]}"; do
  image="${prefix}azr-${target}:${TAG}"
  service=${target%-cpu}
  extra=()
  case "$service" in
    inference|trainer)
      if [ ! -f "$model/config.json" ]; then
        summary+=("images-smoke: $target FAIL: no converted model at $model (run: azr model prepare)")
        failed=1; continue
      fi
      # A readable copy: checkpoint directories are private to the uid that wrote them.
      if [ ! -d "$work/model" ]; then
        cp -r "$model" "$work/model" && chmod -R a+rX "$work/model"
      fi
      extra+=(-v "$work/model:/models/default:ro" -e AZR_INFERENCE__MODEL=/models/default
              -e AZR_TRAINER__MODEL=/models/default --shm-size 2g) ;;
  esac
  [ "$service" = executor ] && extra+=(-v "$work/pylib:/smoke/pylib:ro")
  # The image's own command, exactly as the chart (and its CMD) starts it.
  mapfile -t cmd < <($ENGINE image inspect --format '{{range .Config.Cmd}}{{println .}}{{end}}' "$image" | sed '/^$/d')
  if [ "${#cmd[@]}" -eq 0 ]; then
    summary+=("images-smoke: $target FAIL: image $image not found (run make images)")
    failed=1; continue
  fi
  start=$(date +%s)
  out="$work/$target.log"
  $ENGINE --runtime "$RUNTIME" --runtime-flag network=none run --rm --network none \
    --read-only --user "$AZR_UID:$AZR_UID" --cap-drop ALL --security-opt no-new-privileges \
    --tmpfs /tmp:rw,size=4g,mode=1777 --tmpfs /data:rw,size=4g,mode=1777 \
    -v "$PWD/tests:/smoke/repo/tests:ro" -v "$PWD/pyproject.toml:/smoke/repo/pyproject.toml:ro" \
    -v "$PWD/deploy/smoke:/smoke/bin:ro" -e AZR_API_TOKEN="$token" -e AZR_SERVICE_TOKEN="$token" \
    "${extra[@]}" --entrypoint tini "$image" -- \
    python /smoke/bin/in_container.py "$service" -- "${cmd[@]}" > "$out" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - start ))
  line=$(grep '^SMOKE ' "$out" | tail -n 1)
  if [ "$rc" -ne 0 ] || [[ "$line" != "SMOKE $service ok:"* ]]; then
    failed=1
    tail -n 40 "$out" >&2
    summary+=("images-smoke: $target FAIL in ${seconds}s: ${line:-container exited $rc without a result}")
  else
    summary+=("images-smoke: $target ok in ${seconds}s: ${line#SMOKE $service ok: }")
  fi
done
printf '%s\n' "${summary[@]}"
exit "$failed"
