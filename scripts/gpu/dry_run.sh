# shellcheck shell=bash
# Sourced by scripts/gpu_check.sh: the dry run, on a machine without a GPU
# (CI runs it from scripts/test.sh). It prepares .gpu/, checks what would
# travel, then runs both GPU commands as they run on the GPU, into
# $out/tests and $out/checks, with the GPU's work swapped for checks that the
# commands exist and parse (scripts/gpu/dry_checks.sh): configure for sm_90
# with the carried GoogleTest, build the CUDA test binary and benchmark, run
# the binary (every GPU case skips, the CPU sides run), collect and run
# test_cuda_ops.py (skips), list the compute-sanitizer cases, parse the
# benchmarks' arguments; and it checks what each command leaves in $OUT.
# The op library itself is the one CI built (build/ci compiles the same
# sources for every architecture, sm_90 included): here only ninja's plan of
# it is checked, unless GPU_CHECK_DRY_OPS=1.

run_dry() {
  local log=$out/dry-run.log g
  rm -rf "$out/tests" "$out/checks"
  gpu_step prepare 180 "$log" tail -- env PYTHON="$python" bash scripts/gpu/prepare.sh || return 1
  gpu_step carry 60 "$log" tail -- bash scripts/gpu/dry_checks.sh carry
  if [ "${GPU_CHECK_DRY_OPS:-0}" != 1 ]; then
    targets=(spotlight_cuda_tests spotlight_bench_cuda)
    # The op library CI installed into the venv (not the checkout's python/, which has none).
    export GPU_CHECK_OPS_LIBRARY=${GPU_CHECK_OPS_LIBRARY:-$(cd / && "$python" -c \
      'import importlib.util as u, pathlib as p; print(p.Path(u.find_spec("spotlight_ops").origin).parent / "lib" / "libspotlight_ops.so")')}
  fi
  for g in tests checks; do
    (
      out=$out/$g
      mkdir -p "$out"
      GPU_SUMMARY_ALSO=$GPU_SUMMARY GPU_SUMMARY=$out/summary-$g.txt
      : >"$GPU_SUMMARY"
      "run_$g"
    )
    local files="FILES_$g[@]"
    gpu_step "outputs-$g" 10 "$log" tail -- bash scripts/gpu/dry_checks.sh outputs "$out/$g" "${!files}"
  done
  gpu_step gtest-from-carried 30 "$log" tail -- bash scripts/gpu/dry_checks.sh gtest-from "$build"
  gpu_step ops-build-plan 60 "$log" tail -- ninja -C "$build" -n spotlight_ops
}
