#!/usr/bin/env bash
# Packs what a GPU check needs into .dev/ (git-ignored) for a GPU machine that has no Rust
# toolchain: stripped release builds of `dcgan` (bin/) and of every test binary with a
# `cuda::` half (bin/tests/) and of the cuda_gemm bench (bin/benches/), NVRTC 12.9 and the cuda_fp16.h headers from the PyPI wheels the
# tests use, and scripts/gpu_run.sh. There, from a copy of this checkout:
# `bash .dev/gpu_run.sh` (about two minutes on an H200). Under 40 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cuda-toolchain.sh
out=.dev
rm -rf "$out" && mkdir -p "$out/bin/tests"
cargo build --release
cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)
    target = j.get("target", {})
    if j.get("reason") == "compiler-artifact" and j.get("executable") and target.get("kind") == ["test"]:
        print(target["name"], j["executable"])
' | while read -r name exe; do
    # The binaries whose tests have a cuda:: half (device_tests!) or probe the device.
    if [ "$name" = cuda_device ] || grep -q "device_tests!" "tests/$name.rs" 2>/dev/null; then
        strip -o "$out/bin/tests/$name" "$exe"
    fi
done
# The GPU gemm bench, beside cuBLAS where the machine has one (cudarc loads it at run time);
# criterion's binary runs alone.
mkdir -p "$out/bin/benches"
cargo bench --no-run --bench cuda_gemm --features cublas --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)
    if j.get("reason") == "compiler-artifact" and j.get("executable") and j["target"]["kind"] == ["bench"]:
        print(j["executable"])
' | while read -r exe; do strip -o "$out/bin/benches/cuda_gemm" "$exe"; done
strip -o "$out/bin/dcgan" target/release/dcgan
tar -C "$out" -cJf "$out/bin.tar.xz" bin && rm -rf "$out/bin"
tar -C "$DCGAN_CUDA_DIR/nvidia" -cf - cuda_nvrtc/lib/libnvrtc.so.12 cuda_nvrtc/lib/libnvrtc-builtins.so.12.9 \
    cuda_runtime/include | xz -T0 > "$out/nvrtc.tar.xz"
cp scripts/gpu_run.sh "$out/"
pwd > "$out/manifest_dir"
du -sh "$out"
