#!/usr/bin/env bash
# The test command (README): formatting, lints, then every test of the workspace,
# including the features against an embedded twin and kubectl against `twin serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
