#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, docs, then every test, optimised.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A clean build of every target takes about 3 GiB under target/. When the disk fills, the
# linker dies with "signal 7 [Bus error]", which names nothing; say it here first.
free_kib=$(df -Pk . | awk 'NR == 2 {print $4}')
if [ "${free_kib:-0}" -lt $((4 * 1024 * 1024)) ]; then
    echo "warning: only $((free_kib / 1024)) MiB free on $(df -P . | awk 'NR == 2 {print $6}'); a clean build needs about 3 GiB" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --release --all-targets -- -D warnings

step "cargo doc (no broken links or stray HTML in the docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

step "CUDA toolchain from PyPI (libnvrtc, cuda_fp16.h, ptxas) for the NVRTC tests"
# Installs once into .cache/cuda (or $DCGAN_CUDA_DIR) and exports LD_LIBRARY_PATH,
# DCGAN_CUDA_INCLUDE and DCGAN_PTXAS. Under CI=true a missing toolchain is fatal (the tests
# would fail anyway: nothing CUDA-related skips in CI); elsewhere those tests say they skip.
if ! . scripts/cuda-toolchain.sh; then
    if [ "${CI:-}" = "true" ]; then
        echo "CUDA toolchain unavailable under CI=true" >&2
        exit 1
    fi
    echo "warning: no CUDA toolchain: the NVRTC tests will skip" >&2
fi

step "cargo test --release (every test, optimised)"
cargo test --release --all-targets "$@"

step "all tests passed"
