#!/usr/bin/env bash
# The test command (README): formatting, lints, then every test of the workspace,
# including the features against an embedded twin and kubectl against `twin serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The OSD chaos feature against a real Ceph cluster under the twin (issue #9), after the
# simulated runs: the same feature, with Ceph's own daemons behind the Rook operator.
if command -v ceph-mon >/dev/null 2>&1; then
  cargo run --locked -q -p stormdrill -- run features/chaos-osd.feature --ceph real \
    --report-dir "${CARGO_TARGET_DIR:-target}/ceph-real-reports"
else
  echo "test: real Ceph is not installed (scripts/ceph-setup.sh): chaos-osd --ceph real skipped"
fi
# The cluster feature on the real control plane (--control-plane real): real etcd,
# kube-apiserver, controller manager and scheduler with the twin's simulated nodes.
k8s_bin="${STORMDRILL_K8S_BIN:-${STORMDRILL_K8S_CACHE:-$HOME/.cache/stormdrill/k8s}/v1.37.2-etcd-v3.6.16/bin}"
if [ -x "$k8s_bin/kube-apiserver" ]; then
  cargo run --locked -q -p stormdrill -- run features/cluster.feature --control-plane real \
    --report-dir "${CARGO_TARGET_DIR:-target}/control-plane-real-reports"
elif [ "${STORMDRILL_REQUIRE_K8S:-0}" = 1 ]; then
  echo "test: the real control plane is required here and not built (scripts/k8s-setup.sh)" >&2
  exit 1
else
  echo "test: the real control plane is not built (scripts/k8s-setup.sh): cluster.feature --control-plane real skipped"
fi
