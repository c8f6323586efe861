#!/usr/bin/env bash
# Fills .gpu/ (git-ignored), the one folder the GPU run carries: what the GPU
# machine lacks and cannot fetch (it has no network).
#   .gpu/googletest/   GoogleTest's sources (include/, src/, LICENSE) from
#                      Debian's googletest package (/usr/src/googletest), or
#                      $SPOTLIGHT_GTEST_SOURCES; the build compiles them
#   .gpu/wheels/       pure-Python wheels for Python 3.12 of what the CUDA
#                      tests import beyond the machine's image (pytest and its
#                      dependencies, expecttest); installed there only where
#                      the image lacks them (scripts/gpu/python_env.sh)
#   .gpu/MANIFEST      what is in it, with sizes
# Runs where there is PyPI (a developer's machine, CI). Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
dest=.gpu
python=${PYTHON:-python3}
gtest_src=${SPOTLIGHT_GTEST_SOURCES:-/usr/src/googletest/googletest}

if [ ! -f "$gtest_src/src/gtest-all.cc" ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  dpkg -s googletest >/dev/null 2>&1 || {
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq googletest >/dev/null
  }
fi
[ -f "$gtest_src/src/gtest-all.cc" ] || { echo "prepare: no GoogleTest sources at $gtest_src" >&2; exit 1; }

mkdir -p "$dest/wheels"
rm -rf "$dest/googletest"
mkdir -p "$dest/googletest"
cp -r "$gtest_src/include" "$gtest_src/src" "$dest/googletest/"
for f in "$gtest_src/LICENSE" "$gtest_src/../LICENSE" /usr/share/doc/googletest/copyright; do
  [ -f "$f" ] && { cp "$f" "$dest/googletest/LICENSE"; break; }
done

# Wheels: resolved for Python 3.12 (the GPU machine's), binary only; pure
# Python, so any platform tag fits.
want=(pytest expecttest)
if ! ls "$dest"/wheels/pytest-*.whl "$dest"/wheels/expecttest-*.whl >/dev/null 2>&1; then
  "$python" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform any -d "$dest/wheels" "${want[@]}" 2>&1 |
    { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi

{
  echo "# .gpu: carried to the GPU machine (scripts/gpu/prepare.sh, $(date -u +%F))"
  echo "googletest from $gtest_src"
  (cd "$dest" && ls wheels)
  du -sb "$dest" | cut -f1 | sed 's/$/ bytes in all/'
} >"$dest/MANIFEST"
cat "$dest/MANIFEST"
