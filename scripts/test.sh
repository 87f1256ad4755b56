#!/usr/bin/env bash
# The test command: services up, then the gate CI runs: formatting, lints, and
# every test (unit, property and integration against the real services).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh spotcheck
command -v cargo >/dev/null || { echo "cargo not found: install Rust first (see README)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
