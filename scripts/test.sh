#!/usr/bin/env bash
# The test command: sets up a fresh machine (scripts/setup.sh) and runs every
# test: GoogleTest and CMake tests through ctest, then pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${SPOTLIGHT_VENV:-$PWD/.venv}

SPOTLIGHT_BUILD_TESTS=ON bash scripts/setup.sh

printf '\n== ctest (%ss)\n' "$SECONDS"
# The >2^31-voxel test needs 4.3 GB and ~20 s: on by default, SPOTLIGHT_LARGE_TESTS=0 skips it.
SPOTLIGHT_LARGE_TESTS=${SPOTLIGHT_LARGE_TESTS:-1}
if [ "$SPOTLIGHT_LARGE_TESTS" = 0 ]; then unset SPOTLIGHT_LARGE_TESTS; else export SPOTLIGHT_LARGE_TESTS; fi
ctest --test-dir build/ci --output-on-failure -j2

printf '\n== ctest under AddressSanitizer + UndefinedBehaviorSanitizer (%ss)\n' "$SECONDS"
cmake --preset sanitize >build/sanitize-configure.log 2>&1 || { cat build/sanitize-configure.log; exit 1; }
cmake --build --preset sanitize -j2 >build/sanitize-build.log 2>&1 || { tail -50 build/sanitize-build.log; exit 1; }
(unset SPOTLIGHT_LARGE_TESTS; ctest --preset sanitize -j2)

printf '\n== GPU check, dry run (%ss)\n' "$SECONDS"
# What the GPU run (scripts/gpu_check.sh, docs/cuda.md) needs, checked without a GPU.
PYTHON="$venv/bin/python" bash scripts/gpu_check.sh dry-run

printf '\n== pytest (%ss)\n' "$SECONDS"
# From the checkout root, `import spotlight_ops` is the installed package.
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
printf '\n== all tests passed (%ss)\n' "$SECONDS"
