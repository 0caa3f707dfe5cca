#!/usr/bin/env bash
# Prepares a CUDA 13.0 build toolkit from PyPI wheels, so that `--features cuda` builds on a machine
# without a system CUDA or a GPU (the binaries then run on a GPU machine with driver >= 580).
#
#   scripts/cuda-toolkit.sh [DIR]          # default DIR: ~/.cache/vssl-cuda
#   source DIR/env.sh                      # PATH, CUDA_ROOT, CUDA_COMPUTE_CAP for cargo
#   cargo test --profile test -p vssl-core --features cuda --no-run
#
# Pins: nvcc 13.0 because driver 580 is CUDA 13.0 and cannot JIT newer PTX; cudarc 0.19 knows
# CUDA 11.4-13.4. libcuda.so is the driver's: at link time a stub (generated here from the names
# in cuda.h) stands in for it; it is never shipped or loaded at run time.
# Only PyPI is used. Nothing here is needed by the default (CPU) build or by CI.
set -euo pipefail
dir=${1:-$HOME/.cache/vssl-cuda}
cap=${CUDA_COMPUTE_CAP:-90}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv"
fi
"$dir/venv/bin/pip" install -q \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85 \
  nvidia-curand==10.4.0.35 nvidia-cublas==13.1.0.3
cu=$(echo "$dir"/venv/lib/python3*/site-packages/nvidia/cu13)
[ -x "$cu/bin/nvcc" ] || { echo "nvcc not found under $cu" >&2; exit 1; }

# A link root with unversioned names (the wheels ship only libfoo.so.N) and a libcuda stub.
root="$dir/root"
mkdir -p "$root/lib/stubs"
ln -sfn "$cu/include" "$root/include"
for f in "$cu"/lib/lib*.so.*; do
  base=$(basename "$f")
  ln -sf "$f" "$root/lib/$base"
  ln -sf "$f" "$root/lib/${base%%.so.*}.so"
done
if [ ! -f "$root/lib/stubs/libcuda.so" ]; then
  {
    # every cu* identifier of the driver API (including the _v2/_v3 names the macros map to)
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$cu/include/cuda.h" | sort -u
    printf '%s\n' cuProfilerInitialize cuProfilerStart cuProfilerStop
  } | sort -u | awk '{ printf "void %s(void) {}\n", $1 }' > "$root/lib/stubs/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/libcuda_stub.c"
  ln -sf libcuda.so "$root/lib/stubs/libcuda.so.1"
fi
cat > "$dir/env.sh" <<ENV
export PATH="$cu/bin:\$PATH"
export CUDA_ROOT="$root"
export CUDA_PATH="$root"
export CUDA_COMPUTE_CAP=$cap
export LIBRARY_PATH="$root/lib:$root/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
ENV
echo "CUDA toolkit ready: source $dir/env.sh"
