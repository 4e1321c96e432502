#!/usr/bin/env bash
# Installs what the tests need on a fresh machine. Idempotent; safe to run twice.
set -euo pipefail

need_apt=()
command -v cargo >/dev/null || { echo "setup: cargo is missing: install the Rust toolchain (rustup)" >&2; exit 2; }
command -v cc >/dev/null || need_apt+=(gcc)
command -v python3 >/dev/null || need_apt+=(python3)

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# kubectl talks to `stormdrill twin serve` in the tests. It is not in Debian's
# archive; the build machines ship it. Say so clearly rather than fail obscurely.
if ! command -v kubectl >/dev/null; then
  echo "setup: kubectl not found on PATH: the kubectl compatibility tests need it (https://kubernetes.io/docs/tasks/tools/)" >&2
  exit 2
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
