#!/usr/bin/env bash
# The GPU verification run, in commands that each fit the device tool's
# 600 s and, with the machine's start, its 15 minutes (docs/cuda.md,
# "Running the GPU verification", has the exact tool calls):
#
#   here:            bash scripts/gpu_check.sh prepare   # fills .gpu/ (git-ignored), the one carried folder
#   GPU, command 1:  bash scripts/gpu_check.sh tests     # build (sm_90), CUDA GoogleTest, test_cuda_ops.py
#   GPU, command 2:  bash scripts/gpu_check.sh checks    # build (incremental), compute-sanitizer, benchmarks
#   here or CI:      bash scripts/gpu_check.sh dry-run   # all of it but what needs the GPU
#
# Each step runs under its own `timeout`, in order of value, appends to its
# log as it runs, and prints one STEP line; a failed build stops the command.
# Logs go to $OUT (what the device tool brings back: at most 8 files per
# command, listed in FILES_* below) or build/gpu-out. Environment:
#   PYTHON            the Python with torch (default python3)
#   GPU_CHECK_BUDGET  seconds the command may take in all (tests 360, checks 300, dry-run 1200)
#   GPU_CHECK_BUILD   build folder (default build/gpu; build/gpu-dry for the dry run)
#   GPU_CHECK_ARCH    CUDA architectures (default 90: the H200)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/gpu/lib.sh
source scripts/gpu/python_env.sh

group=${1:-}
dry=0
[ "$group" = dry-run ] && dry=1
out=${OUT:-$PWD/build/gpu-out}
python=${PYTHON:-python3}
((dry)) && [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && python=$PWD/.venv/bin/python
build=${GPU_CHECK_BUILD:-build/gpu}
((dry)) && build=${GPU_CHECK_BUILD:-build/gpu-dry}
arch=${GPU_CHECK_ARCH:-90}
cuda_tests=$build/tests/cpp/cuda/spotlight_cuda_tests
bench_cuda=$build/benchmarks/spotlight_bench_cuda
# The GoogleTest cases small enough for compute-sanitizer (tests/cpp/cuda/test_small_shapes.cu).
sanitizer_filter='CudaSmallShapes*'
targets=(spotlight_ops spotlight_cuda_tests spotlight_bench_cuda)
# What each command leaves in $OUT (the device tool brings back at most 8 files).
FILES_tests=(summary-tests.txt build-tests.log gtest.log gtest.xml pytest.log pytest.xml)
FILES_checks=(summary-checks.txt build-checks.log sanitizer.log bench_cuda.log bench_cuda.md bench_loss.log
              bench_loss.md)

find_sanitizer() {
  local s
  for s in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    command -v "$s" 2>/dev/null && return 0
  done
  return 1
}

environment() {
  {
    echo "# spotlight GPU check: $group, $(date -u '+%F %H:%M:%S') UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | sed "s/^/gpu: /"
    else
      echo "gpu: no nvidia-smi"
    fi
    echo "nvcc: $(nvcc --version 2>/dev/null | tail -n 1)"
    echo "compute-sanitizer: $(find_sanitizer || echo 'not found')"
    echo "cmake: $(cmake --version | head -n 1); cores: $(nproc)"
  } 2>&1 | tee -a "$GPU_SUMMARY"
}

# Python with torch, pytest and the op library of this build; stops the command when it fails.
use_python() {
  local log=$1 t0=$SECONDS
  printf '\n===== python-env\n' >>"$log"
  if gpu_python_env "$python" >>"$log" 2>&1; then
    gpu_record python-env PASS 0 "$t0" "$log"
  else
    gpu_record python-env FAIL 1 "$t0" "$log"
    tail -n 20 "$log"
    exit 1
  fi
  export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  export SPOTLIGHT_OPS_LIBRARY=${GPU_CHECK_OPS_LIBRARY:-$PWD/$build/ops/libspotlight_ops.so}
}

# Configure for $arch with the carried GoogleTest (never the system one), build $targets.
configure_and_build() {
  local log=$1 launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  gpu_step configure 120 "$log" tail -- \
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
    -DSPOTLIGHT_BUILD_OPS=ON -DSPOTLIGHT_BUILD_TESTS=ON -DSPOTLIGHT_BUILD_BENCHMARKS=ON -DSPOTLIGHT_CUDA=ON \
    -DSPOTLIGHT_CUDA_ARCHITECTURES="$arch" -DSPOTLIGHT_GTEST_SOURCE_DIR="$PWD/.gpu/googletest" \
    -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON \
    -DPython3_EXECUTABLE="$(command -v "$python")" || return 1
  # (The dry run's limit is its budget: CI's 2 shared cores build slower than the GPU machine's 16.)
  gpu_step build "$((dry ? 900 : 330))" "$log" tail -- cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
}

run_tests() {  # command 1
  environment
  use_python "$out/build-tests.log"
  configure_and_build "$out/build-tests.log" || { gpu_summary "build failed: stopping"; return 1; }
  # Without a GPU every case skips: the dry run runs the binary as it is.
  gpu_step cuda-gtest 150 "$out/gtest.log" gtest -- "$cuda_tests" --gtest_output="xml:$out/gtest.xml"
  # Four pytest workers where the image has pytest-xdist: faster, and a test that
  # poisons its CUDA context (an illegal address) takes only its worker down.
  local workers=()
  [ -z "$(gpu_missing_modules "$python" xdist)" ] && ((!dry)) && workers=(-n 4)
  gpu_step test_cuda_ops.py 400 "$out/pytest.log" pytest -- "$python" -m pytest -v -p no:cacheprovider \
    "${workers[@]}" --durations=20 --junitxml="$out/pytest.xml" tests/python/test_cuda_ops.py
}

run_checks() {  # command 2
  environment
  use_python "$out/build-checks.log"
  configure_and_build "$out/build-checks.log" || { gpu_summary "build failed: stopping"; return 1; }
  local sanitizer entry tool cmd
  sanitizer=$(find_sanitizer) || sanitizer=compute-sanitizer
  for entry in memcheck:70 racecheck:90 synccheck:45 initcheck:45; do
    tool=${entry%%:*}
    cmd=("$sanitizer" --tool "$tool" --error-exitcode 1 "$cuda_tests" --gtest_filter="$sanitizer_filter")
    ((dry)) && cmd=(bash scripts/gpu/dry_checks.sh cases "$cuda_tests" "$sanitizer_filter")
    gpu_step "sanitizer-$tool" "${entry##*:}" "$out/sanitizer.log" sanitizer -- "${cmd[@]}"
  done
  cmd=("$bench_cuda" --repeats 20 --output "$out/bench_cuda.md")
  ((dry)) && cmd=("$bench_cuda" --help)
  gpu_step bench-cuda 60 "$out/bench_cuda.log" tail -- "${cmd[@]}"
  # --output: the table comes back with the logs; the checkout's docs/benchmarks.md stays as it is.
  cmd=("$python" benchmarks/bench_loss.py --device cuda --repeats 5 --warmup 1 --output "$out/bench_loss.md")
  ((dry)) && cmd=(bash scripts/gpu/dry_checks.sh bench-loss "${cmd[@]}")
  gpu_step bench_loss.py 200 "$out/bench_loss.log" tail -- "${cmd[@]}"
}

source scripts/gpu/dry_run.sh

case $group in
  prepare) exec bash scripts/gpu/prepare.sh ;;
  tests | checks | dry-run) ;;
  *)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
mkdir -p "$out"
GPU_SUMMARY=$out/summary-$group.txt
: >"$GPU_SUMMARY"
case $group in
  tests) gpu_budget_start 360 && run_tests ;;
  checks) gpu_budget_start 300 && run_checks ;;
  dry-run) gpu_budget_start 1200 && run_dry ;;
esac
failed=$(grep -c -E '^STEP .* (FAIL|TIMEOUT) ' "$GPU_SUMMARY")
gpu_summary "DONE $group: $(grep -c '^STEP ' "$GPU_SUMMARY") steps, $failed failed or timed out, $((SECONDS - GPU_T0)) s; files in $out: $(cd "$out" && ls | tr '\n' ' ')"
[ "$failed" = 0 ]
