#!/usr/bin/env bash
# Sets up a fresh machine for spotlight: Debian packages (GoogleTest, Google
# Benchmark, ninja, ccache), a venv with torch from the local wheels and the
# Python dependencies, and the build of the package (ops library included).
#   SPOTLIGHT_VENV   venv path            (default: .venv in the checkout)
#   SPOTLIGHT_TORCH  torch requirement    (default: torch==2.14.1, the CUDA 13 build)
#   SPOTLIGHT_BUILD_TESTS=ON              also build the C++ tests (build/ci)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${SPOTLIGHT_VENV:-$PWD/.venv}
torch_spec=${SPOTLIGHT_TORCH:-torch==2.14.1}
build_tests=${SPOTLIGHT_BUILD_TESTS:-OFF}

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "system packages"
missing=()
for pkg in libgtest-dev libbenchmark-dev ninja-build ccache; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "python environment ($venv, $torch_spec)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# (grep: the local package index warns once per missing project folder)
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$torch_spec" -r requirements/ci.txt 2>&1 |
  { grep -v "is ignored: it is neither a file nor a directory" || true; }

step "VisCy's spotlight.py for the preset tests (optional; they skip without it)"
# One file of the viscy-utils wheel (BSD-3, needs only torch), kept out of the
# product under build/: tests/python/test_presets.py loads it by path.
viscy_file=build/third_party/viscy_utils/losses/spotlight.py
if [ ! -f "$viscy_file" ]; then
  tmp=$(mktemp -d)
  if "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps --python-version 3.12 \
      --only-binary=:all: viscy-utils==0.1.0 -d "$tmp" >/dev/null 2>&1 &&
    "$venv/bin/python" -c "import glob, sys, zipfile; zipfile.ZipFile(glob.glob(sys.argv[1] + '/*.whl')[0]).extract('viscy_utils/losses/spotlight.py', sys.argv[2])" \
      "$tmp" build/third_party; then
    echo "fetched $viscy_file"
  else
    echo "viscy-utils not available: the VisCy comparison tests will skip"
  fi
  rm -rf "$tmp"
fi

step "build (pip install --no-build-isolation .)"
if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
fi
log=build/pip-install.log
mkdir -p build
if ! "$venv/bin/python" -m pip install --no-build-isolation --no-deps --force-reinstall -v . \
    -C build-dir=build/ci -C cmake.define.SPOTLIGHT_BUILD_TESTS="$build_tests" \
    -C cmake.define.Python3_EXECUTABLE="$venv/bin/python" >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "build failed; full log in $log" >&2
  exit 1
fi
grep -E "spotlight: (torch|CUDA)" "$log" | sed 's/^ *//' || true
step "setup done"
