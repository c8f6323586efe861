#!/usr/bin/env bash
# The checks of the dry run (scripts/gpu_check.sh dry-run) that stand in for
# what needs the GPU, and those of what the run carries and returns.
#   cases BINARY FILTER         the GoogleTest binary lists cases under FILTER
#   bench-loss PYTHON ARGS...   bench_loss.py parses ARGS (and --output is one of them)
#   carry                       .gpu/ is git-ignored and the travelling tree is under 64 MiB
#   gtest-from BUILD            BUILD compiled and linked GoogleTest from .gpu/, not the system's
#   outputs DIR NAME...         DIR holds only the files NAME..., at most 8, plainly named
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what=$1
shift

case $what in
  cases)
    n=$("$1" --gtest_list_tests --gtest_filter="$2" | grep -c '^  ' || true)
    echo "$n cases under $2"
    [ "$n" -gt 0 ]
    ;;
  bench-loss)
    python=$1
    shift 2  # the script path
    "$python" benchmarks/bench_loss.py --help | grep -q -- '--output'
    # Parse the arguments with the script's own parser, without running it.
    "$python" - "$@" <<'PY'
import runpy, sys
sys.argv = ["bench_loss.py", *sys.argv[1:]]
mod = runpy.run_path("benchmarks/bench_loss.py", run_name="bench_loss_parse")
import argparse
seen = {}
real_parse = argparse.ArgumentParser.parse_args
def capture(self, *a, **k):
    seen["args"] = real_parse(self, *a, **k)
    raise SystemExit(0)
argparse.ArgumentParser.parse_args = capture
try:
    mod["main"]()
except SystemExit:
    pass
args = seen["args"]
print("bench_loss.py parses:", vars(args))
assert args.device == "cuda" and args.output is not None and "docs" not in str(args.output), args
PY
    ;;
  carry)
    git check-ignore -q .gpu || { echo ".gpu is not git-ignored: it would travel twice" >&2; exit 1; }
    [ -f .gpu/googletest/src/gtest-all.cc ] && ls .gpu/wheels/pytest-*.whl >/dev/null
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
      awk '{s += $1} END {print s + 0}')
    carried=$(du -sb .gpu | cut -f1)
    total=$((tree + carried))
    echo "working tree $tree bytes + .gpu $carried bytes = $total bytes (limit 67108864)"
    [ "$total" -le 67108864 ]
    ;;
  gtest-from)
    build=$1
    grep -q "^SPOTLIGHT_GTEST_SOURCE_DIR:PATH=$PWD/.gpu/googletest$" "$build/CMakeCache.txt"
    ! grep -q '^GTest_DIR:PATH=/' "$build/CMakeCache.txt"
    # Headers the CUDA test objects were compiled with (ninja's dependency log).
    headers=$(ninja -C "$build" -t deps | grep -E 'gtest/gtest\.h$' | sort -u)
    echo "gtest.h seen by the build:"
    echo "$headers"
    [ -n "$headers" ] && ! grep -qv "/.gpu/googletest/include/" <<<"$headers"
    link=$(ninja -C "$build" -t commands spotlight_cuda_tests | tail -n 1)
    grep -q 'libspotlight_gtest_main\.a' <<<"$link" && ! grep -qE -- '-lgtest|libgtest' <<<"$link"
    echo "spotlight_cuda_tests links tests/cpp/libspotlight_gtest_main.a"
    ;;
  outputs)
    dir=$1
    shift
    (($# <= 8)) || { echo "$# files declared, the device tool brings back 8" >&2; exit 1; }
    for f in "$@"; do [[ $f =~ ^[A-Za-z0-9._-]+$ ]] || { echo "bad name $f" >&2; exit 1; }; done
    for f in "$dir"/*; do
      name=${f##*/}
      [[ " $* " == *" $name "* ]] || { echo "$name is written but not declared" >&2; exit 1; }
      [ -f "$f" ] || { echo "$name is not a plain file" >&2; exit 1; }
    done
    echo "$(ls "$dir" | wc -l) files written, $# declared: $*"
    ;;
  *)
    sed -n '2,8p' "$0"
    exit 2
    ;;
esac
