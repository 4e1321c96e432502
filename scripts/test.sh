#!/usr/bin/env bash
# The test command (README): formatting, lints, then every test of the workspace,
# including the features against an embedded twin and kubectl against `twin serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
# The OSD chaos feature against a real Ceph cluster under the twin (issue #9), after the
# simulated runs: the same feature, with Ceph's own daemons behind the Rook operator.
if command -v ceph-mon >/dev/null 2>&1; then
  cargo run --locked -q -p stormdrill -- run features/chaos-osd.feature --ceph real \
    --report-dir "${CARGO_TARGET_DIR:-target}/ceph-real-reports"
else
  echo "test: real Ceph is not installed (scripts/ceph-setup.sh): chaos-osd --ceph real skipped"
fi
# Every feature on the real control plane runs in `cargo test` (harness/tests/features.rs).
