#!/usr/bin/env bash
# The CUDA toolchain the tests need, from PyPI (no GPU, no system CUDA):
#   libnvrtc (nvidia-cuda-nvrtc-cu12), cuda_fp16.h / cuda_bf16.h (nvidia-cuda-runtime-cu12),
#   ptxas (nvidia-cuda-nvcc-cu12).
# Source it: `. scripts/cuda-toolchain.sh`. It installs into ${DCGAN_CUDA_DIR:-$PWD/.cache/cuda}
# once (skipped when already there) and exports
#   DCGAN_CUDA_DIR            the install directory
#   LD_LIBRARY_PATH           + the directory of libnvrtc.so.12 (cudarc loads it from there)
#   DCGAN_CUDA_INCLUDE        the directory holding cuda_fp16.h / cuda_bf16.h
#   DCGAN_PTXAS               the ptxas binary
# On failure (no pip, no network) it says so and returns non-zero; under CI=true the caller
# must treat that as fatal (scripts/test.sh runs with `set -e`).

_dcgan_cuda_setup() {
    local dir="${DCGAN_CUDA_DIR:-$PWD/.cache/cuda}"
    local pkgs=(
        "nvidia-cuda-nvrtc-cu12==12.9.86"
        "nvidia-cuda-runtime-cu12==12.9.79"
        "nvidia-cuda-nvcc-cu12==12.9.86"
    )
    local stamp="$dir/.installed-12.9"
    if [ ! -f "$stamp" ]; then
        local pip
        if command -v pip3 >/dev/null 2>&1; then pip=pip3
        elif command -v pip >/dev/null 2>&1; then pip=pip
        elif command -v python3 >/dev/null 2>&1; then pip="python3 -m pip"
        else
            echo "cuda-toolchain: no pip found; cannot install ${pkgs[*]}" >&2
            return 1
        fi
        echo "cuda-toolchain: installing ${pkgs[*]} into $dir" >&2
        mkdir -p "$dir"
        if ! PIP_ROOT_USER_ACTION=ignore $pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "${pkgs[@]}" >&2; then
            echo "cuda-toolchain: pip install failed" >&2
            return 1
        fi
        touch "$stamp"
    fi
    dir="$(cd "$dir" && pwd)"
    local lib="$dir/nvidia/cuda_nvrtc/lib"
    local inc="$dir/nvidia/cuda_runtime/include"
    local ptxas="$dir/nvidia/cuda_nvcc/bin/ptxas"
    # Wheels ship libnvrtc.so.12 only; cudarc's loader also tries the plain name.
    if [ -f "$lib/libnvrtc.so.12" ] && [ ! -e "$lib/libnvrtc.so" ]; then
        ln -sf libnvrtc.so.12 "$lib/libnvrtc.so"
    fi
    [ -x "$ptxas" ] || chmod +x "$ptxas" 2>/dev/null || true
    if [ ! -f "$lib/libnvrtc.so.12" ] || [ ! -f "$inc/cuda_fp16.h" ] || [ ! -x "$ptxas" ]; then
        echo "cuda-toolchain: incomplete install in $dir (remove it and retry)" >&2
        return 1
    fi
    export DCGAN_CUDA_DIR="$dir"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export DCGAN_CUDA_INCLUDE="$inc"
    export DCGAN_PTXAS="$ptxas"
    echo "cuda-toolchain: nvrtc $lib, include $inc, ptxas $ptxas" >&2
}
_dcgan_cuda_setup
