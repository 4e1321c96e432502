#!/usr/bin/env bash
# The main job (README): every feature against the embedded twin, writing a report
# under reports/<run-id>/. Extra arguments go to `stormdrill run`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked -p stormdrill
exec "${CARGO_TARGET_DIR:-target}/release/stormdrill" run --target twin features/ "$@"
