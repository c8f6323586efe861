#!/usr/bin/env bash
# For a machine with an NVIDIA GPU (the `device` machines: torch 2.11+cu130,
# nvcc 13.0, CMake, ninja; GoogleTest may be missing): builds the op library
# and tests for the local GPU, runs the CUDA tests, compute-sanitizer
# (memcheck, racecheck, synccheck) on the GoogleTest CUDA binary, and the
# benchmarks. Writes logs under ${OUT:-build/gpu-out}. Not run by CI.
# Status: written without a GPU; first run pending (see docs/cuda.md).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-build/gpu-out}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONPATH=$PWD/python SPOTLIGHT_OPS_LIBRARY=$PWD/build/gpu/ops/libspotlight_ops.so

nvidia-smi | tee "$out/nvidia-smi.txt"
cmake -S . -B build/gpu -G Ninja -DSPOTLIGHT_BUILD_OPS=ON -DSPOTLIGHT_BUILD_TESTS=ON -DSPOTLIGHT_CUDA=ON \
  -DSPOTLIGHT_CUDA_ARCHITECTURES=native -DPython3_EXECUTABLE="$(command -v "$python")" 2>&1 | tee "$out/configure.log"
cmake --build build/gpu -j 2>&1 | tail -n 30 | tee "$out/build.log"

ctest --test-dir build/gpu --output-on-failure 2>&1 | tee "$out/ctest.log"
cuda_tests=build/gpu/tests/cpp/cuda/spotlight_cuda_tests
if [ -x "$cuda_tests" ]; then
  for tool in memcheck racecheck synccheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 1 "$cuda_tests" 2>&1 | tail -n 20 | tee "$out/sanitizer-$tool.log"
  done
fi
"$python" -m pytest -q tests/python/test_cuda_ops.py tests/python 2>&1 | tail -n 30 | tee "$out/pytest.log"
"$python" benchmarks/bench_loss.py --device cuda 2>&1 | tee "$out/bench.log"
