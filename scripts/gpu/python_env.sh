# shellcheck shell=bash
# Sourced on the GPU machine: makes what the CUDA tests import importable.
# The image's own packages win; a carried wheel (.gpu/wheels) is installed,
# into /tmp/spotlight-site, only for a module the image lacks. pytest comes
# with its dependencies as one set, so that versions never mix.
gpu_missing_modules() {  # PYTHON MODULE...: those of MODULE... it cannot import
  "$1" - "${@:2}" <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
}

gpu_python_env() {
  local python=$1 site=/tmp/spotlight-site wheels=() missing
  missing=" $(gpu_missing_modules "$python" pytest expecttest) "
  [[ $missing == *" pytest "* ]] && wheels+=(.gpu/wheels/pytest-*.whl .gpu/wheels/pluggy-*.whl
    .gpu/wheels/iniconfig-*.whl .gpu/wheels/packaging-*.whl .gpu/wheels/pygments-*.whl)
  [[ $missing == *" expecttest "* ]] && wheels+=(.gpu/wheels/expecttest-*.whl)
  if ((${#wheels[@]})); then
    echo "installing carried wheels into $site: ${wheels[*]##*/}"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "${wheels[@]}" || return 1
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
  fi
  "$python" -c 'import sys, torch, numpy, pytest, expecttest
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
      "numpy", numpy.__version__, "pytest", pytest.__version__)'
}
