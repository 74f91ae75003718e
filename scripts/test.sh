#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test, optimised.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --release --all-targets -- -D warnings

step "cargo test --release (every test, optimised)"
cargo test --release --all-targets "$@"

step "all tests passed"
