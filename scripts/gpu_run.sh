#!/usr/bin/env bash
# The GPU check, from the bundle scripts/gpu_bundle.sh made (run from the checkout's root,
# `bash .dev/gpu_run.sh`): the cuda:: half of every op test, then `dcgan bench --device cuda`
# at the DCGAN shapes beside scripts/pytorch_reference.py (fp32 and TF32) when PyTorch is
# there, the cuda_gemm criterion bench, then the default training run. Logs and a JSON line
# per run go to $OUT (default /tmp/gpu_check); the last lines printed are the summary.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
log() { printf '\n===== %s (t=%ss)\n' "$*" "$SECONDS"; }
here=$(cd "$(dirname "$0")" && pwd)
# The test binaries find their fixtures through the CARGO_MANIFEST_DIR they were built in.
manifest=$(cat "$here/manifest_dir")
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
tmp=$(mktemp -d)
# The unpacked toolchain and binaries are a few hundred MB: never leave them behind.
trap 'rm -rf "$tmp"' EXIT
tar -C "$tmp" -xJf "$here/nvrtc.tar.xz"
tar -C "$tmp" -xJf "$here/bin.tar.xz"
ln -sf libnvrtc.so.12 "$tmp/cuda_nvrtc/lib/libnvrtc.so"
export LD_LIBRARY_PATH="$tmp/cuda_nvrtc/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
export DCGAN_CUDA_INCLUDE="$tmp/cuda_runtime/include" XDG_CACHE_HOME="$tmp/cache" RUST_BACKTRACE=1
if [ -n "$manifest" ] && [ ! -e "$manifest" ]; then mkdir -p "$(dirname "$manifest")" && ln -s "$PWD" "$manifest"; fi
log "tests (cuda:: only)"
for t in "$tmp"/bin/tests/*; do
    name=$(basename "$t")
    filter=cuda::; [ "$name" = cuda_device ] && filter=
    echo "----- $name"
    timeout 120 "$t" $filter 2>&1 | grep -v '^test .* ok$'
done > "$OUT/tests.log" 2>&1
grep -E '^(-----|test result|failures:|    cuda::)' "$OUT/tests.log"
R="$OUT/side_by_side.jsonl"
: > "$R"
tag() { sed "s/^{/{\"engine\":\"$1\",/"; }
for cfg in "64 3 128" "64 3 64" "32 1 128" "16 3 128"; do
    set -- $cfg
    log "DCGAN-$1 ${2}ch batch $3"
    timeout 120 "$tmp/bin/dcgan" bench --device cuda --image-size "$1" --channels "$2" --batch-size "$3" --json | tag dcgan >> "$R"
    if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
        timeout 120 python3 scripts/pytorch_reference.py --device cuda --image-size "$1" --channels "$2" --batch-size "$3" | tag torch >> "$R"
        timeout 120 python3 scripts/pytorch_reference.py --device cuda --tf32 --image-size "$1" --channels "$2" --batch-size "$3" | tag torch-tf32 >> "$R"
    fi
done
log "dcgan bench (text, with the breakdown)"
timeout 120 "$tmp/bin/dcgan" bench --device cuda > "$OUT/bench.txt" 2>&1
cat "$OUT/bench.txt"
log "cuda_gemm bench (engine matmul beside cuBLAS)"
# cuBLAS from PyTorch's wheels where the machine has them.
cublas=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null)
(cd "$tmp" && LD_LIBRARY_PATH="${cublas:+$cublas:}$LD_LIBRARY_PATH" timeout 240 "$tmp/bin/benches/cuda_gemm" \
    --bench --warm-up-time 1 --measurement-time 2) > "$OUT/cuda_gemm.txt" 2>&1
grep -E '^cuda_gemm|time:|thrpt:' "$OUT/cuda_gemm.txt"
log "default training run"
timeout 300 "$tmp/bin/dcgan" train --device cuda --out "$tmp/run" --no-progress > "$OUT/train.log" 2>&1
tail -2 "$OUT/train.log"
log "summary"
python3 - "$R" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    print("%-10s %2d×%-2d×%d b%-3d %8.2f ms/step (min %8.2f) %8.0f img/s" % (
        j["engine"], j["image_size"], j["image_size"], j["channels"], j["batch_size"],
        j["ms_per_step_median"], j["ms_per_step_min"], j["images_per_s"]))
PY
