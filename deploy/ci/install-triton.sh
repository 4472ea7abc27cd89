#!/usr/bin/env bash
# Create the Triton Inference Server environment used by the Triton tests and bench/bench_triton.py.
#
#   bash deploy/ci/install-triton.sh [VENV]        (default: .venv-triton at the repository root)
#
# `nvidia-pytriton` 0.7.0 bundles a real `tritonserver` 2.51 binary (python backend only, runs on
# CPU); it pins numpy < 2, so it gets its own virtual environment, like a separate server host would
# have, never the project's. onnxruntime is added for the test repository's python-backend model.py.
# Idempotent: does nothing when the environment already has a working tritonserver.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${1:-${INSPECTOR_TRITON_VENV:-.venv-triton}}"
py="${PYTHON:-python3}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("pytriton")
root = pathlib.Path(spec.origin).parent / "tritonserver"
import onnxruntime  # noqa: F401  (the test model.py needs it)
ok = (root / "bin" / "tritonserver").is_file() and (root / "backends" / "python" / "triton_python_backend_stub").is_file()
sys.exit(0 if ok else 1)
PY
then
    echo "install-triton: $venv already has tritonserver"
    exit 0
fi

"$py" -c 'import sys; assert sys.version_info >= (3, 8)'
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# numpy < 2 is what nvidia-pytriton 0.7.0 requires; onnxruntime 1.20 is the last release for numpy 1 here
"$venv/bin/pip" install -q "nvidia-pytriton==0.7.0" "onnxruntime>=1.17,<1.21"
# The python backend runs model.py in a stub process linked against one Python version: put the stub
# for this environment's Python where tritonserver looks for it (pytriton does the same at run time).
"$venv/bin/python" - <<'PY'
import importlib.util, pathlib, shutil, sys
root = pathlib.Path(importlib.util.find_spec("pytriton").origin).parent / "tritonserver"
server = root / "bin" / "tritonserver"
assert server.is_file(), f"no tritonserver binary at {server}"
stub = root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / "triton_python_backend_stub"
shutil.copy2(stub, root / "backends" / "python" / "triton_python_backend_stub")
print(f"install-triton: tritonserver at {server}")
PY
