#!/usr/bin/env bash
# The test command: sets up a fresh machine (scripts/setup.sh) and runs every
# test: GoogleTest and CMake tests through ctest, then pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${SPOTLIGHT_VENV:-$PWD/.venv}

SPOTLIGHT_BUILD_TESTS=ON bash scripts/setup.sh

printf '\n== ctest (%ss)\n' "$SECONDS"
ctest --test-dir build/ci --output-on-failure -j2

printf '\n== pytest (%ss)\n' "$SECONDS"
# From the checkout root, `import spotlight_ops` is the installed package.
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
printf '\n== all tests passed (%ss)\n' "$SECONDS"
