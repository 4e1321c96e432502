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

# Headless Chromium opens report.html in tests/report_view.rs (Debian's package). Where
# it cannot be installed the test says so and skips its browser check.
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! { $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq &&
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
           --no-install-recommends chromium; }; then
    echo "setup: could not install chromium: tests/report_view.rs will skip its browser check" >&2
  fi
fi

# Real Ceph and Prometheus (Debian packages) for `--ceph real`: twin/tests/ceph_real.rs,
# harness/tests/ceph_prom_real.rs, prom_twin_real.rs and the chaos-osd feature in
# scripts/test.sh. CI (STORMDRILL_REQUIRE_CEPH=1, set by .ci/run) fails here when they
# cannot be installed; elsewhere those runs are skipped with a message.
if ! "$(dirname "$0")/ceph-setup.sh"; then
  if [ "${STORMDRILL_REQUIRE_CEPH:-0}" = 1 ]; then
    echo "setup: real Ceph is required here (STORMDRILL_REQUIRE_CEPH=1) and could not be installed" >&2
    exit 2
  fi
  echo "setup: real Ceph not installed: the --ceph real tests and feature run will be skipped" >&2
fi

# Real PostgreSQL for `--postgres real` (twin/tests/postgres_real.rs): Debian's
# server, run as the `postgres` account the package creates. CI
# (STORMDRILL_REQUIRE_POSTGRES=1) fails here when it cannot be installed; elsewhere
# that test is skipped with a message.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! { $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq &&
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
           --no-install-recommends postgresql-15; }; then
    if [ "${STORMDRILL_REQUIRE_POSTGRES:-0}" = 1 ]; then
      echo "setup: real PostgreSQL is required here (STORMDRILL_REQUIRE_POSTGRES=1) and could not be installed" >&2
      exit 2
    fi
    echo "setup: postgresql-15 not installed: the --postgres real test will be skipped" >&2
  fi
fi

# The real Kubernetes control plane for `--control-plane real` (twin/tests/
# control_plane_real.rs): built from the Go module proxy into a cache outside the
# clone (~/.cache/stormdrill/k8s); seconds when already built. CI
# (STORMDRILL_REQUIRE_K8S=1, set by .ci/run) fails here when it cannot be built.
if ! "$(dirname "$0")/k8s-setup.sh" >/dev/null; then
  if [ "${STORMDRILL_REQUIRE_K8S:-0}" = 1 ]; then
    echo "setup: the real control plane is required here (STORMDRILL_REQUIRE_K8S=1) and could not be built" >&2
    exit 2
  fi
  echo "setup: the real control plane is not built: the --control-plane real tests will be skipped" >&2
fi

# kubectl talks to `stormdrill twin serve` in the tests. It is not in Debian's
# archive; the build machines ship it. Say so clearly rather than fail obscurely.
if ! command -v kubectl >/dev/null; then
  echo "setup: kubectl not found on PATH: the kubectl compatibility tests need it (https://kubernetes.io/docs/tasks/tools/)" >&2
  exit 2
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
