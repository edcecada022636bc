#!/usr/bin/env bash
# Compiles every CUDA source (compile only, -arch=sm_90) against the installed torch headers, so
# CUDA code cannot rot on machines without a GPU. The CPU wheel of torch lacks one generated
# header, c10/cuda/impl/cuda_cmake_macros.h; an empty stub stands in for it.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
TORCH_INC=$(python -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'include'))")
PY_INC=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
STUB=$(mktemp -d)
trap 'rm -rf "$STUB"' EXIT
mkdir -p "$STUB/c10/cuda/impl"
touch "$STUB/c10/cuda/impl/cuda_cmake_macros.h"
status=0
for source in $(find csrc -name '*.cu' | sort); do
  echo "nvcc -c $source"
  "$NVCC" -std=c++20 -arch=sm_90 -O3 --expt-relaxed-constexpr -Werror all-warnings -c "$source" -o /dev/null \
    -I csrc -I "$STUB" -I "$TORCH_INC" -I "$TORCH_INC/torch/csrc/api/include" -I "$PY_INC" \
    -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H || status=1
done
exit $status
