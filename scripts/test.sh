#!/usr/bin/env bash
# The test command (README): formatting, lints, then every test of the workspace,
# including the features against an embedded twin and kubectl against `twin serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each part's wall time, so CI's log says where its minutes go.
part() { echo "test: $1 done at ${SECONDS} s"; }
./scripts/setup.sh
part setup
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
part "fmt and clippy"
cargo test --workspace --locked --no-fail-fast
part "cargo test"
# The OSD chaos feature against a real Ceph cluster under the twin (issue #9), after the
# simulated runs: the same feature, with Ceph's own daemons behind the Rook operator.
if command -v ceph-mon >/dev/null 2>&1; then
  cargo run --locked -q -p stormdrill -- run features/chaos-osd.feature --ceph real \
    --report-dir "${CARGO_TARGET_DIR:-target}/ceph-real-reports"
  part "chaos-osd --ceph real"
else
  echo "test: real Ceph is not installed (scripts/ceph-setup.sh): chaos-osd --ceph real skipped"
fi
# Every feature on the real control plane runs in `cargo test` (harness/tests/features.rs).
