"""Run a local Triton Inference Server from its own virtual environment (tests and benchmarks).

The environment comes from ``deploy/ci/install-triton.sh`` (``nvidia-pytriton`` 0.7.0 bundles a real
``tritonserver`` 2.51 with the python backend; it pins numpy < 2, hence its own venv). Found through
``$INSPECTOR_TRITON_VENV`` or ``<repo>/.venv-triton``. The server gets free ports, runs in its own
process group (so its python-backend stub processes go with it) and is stopped by that group.

    with TritonServer(find_install(), "triton-repo") as server:
        print(server.grpc_url)             # 127.0.0.1:<port>
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import InspectorError

REPO_ROOT = Path(__file__).resolve().parents[3]
ENV_VAR = "INSPECTOR_TRITON_VENV"
INSTALL_HINT = "bash deploy/ci/install-triton.sh"


@dataclass(frozen=True)
class TritonInstall:
    venv: Path
    server: Path  # tritonserver binary
    backends: Path  # --backend-directory
    env: dict[str, str]  # LD_LIBRARY_PATH and PATH the server needs


def find_install(venv: str | Path | None = None) -> TritonInstall | None:
    """The Triton environment, or None when it is not installed (callers skip with INSTALL_HINT)."""
    venv = Path(venv or os.environ.get(ENV_VAR) or REPO_ROOT / ".venv-triton")
    py = venv / "bin" / "python"
    if not py.is_file():
        return None
    try:
        out = subprocess.run(
            [str(py), "-c", "import importlib.util, sysconfig, pathlib; "
             "print(pathlib.Path(importlib.util.find_spec('pytriton').origin).parent); "
             "print(sysconfig.get_config_var('LIBDIR'))"],
            capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    except (subprocess.SubprocessError, OSError):
        return None
    pkg, libdir = Path(out[0]), out[1]
    root = pkg / "tritonserver"
    server, backends = root / "bin" / "tritonserver", root / "backends"
    if not server.is_file() or not (backends / "python" / "triton_python_backend_stub").is_file():
        return None
    libs = pkg.parent / "nvidia_pytriton.libs"
    env = {"LD_LIBRARY_PATH": os.pathsep.join(p for p in (libdir, str(libs), os.environ.get("LD_LIBRARY_PATH")) if p),
           "PATH": os.pathsep.join((str(venv / "bin"), os.environ.get("PATH", "")))}
    return TritonInstall(venv=venv, server=server, backends=backends, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """A ``tritonserver`` process on free loopback ports, for as long as the context lasts."""

    def __init__(self, install: TritonInstall, model_repository: str | Path, *, log_path: str | Path | None = None,
                 ports: tuple[int, int, int] | None = None, ort_threads: int = 1):
        self.install = install
        self.model_repository = Path(model_repository)
        self.grpc_port, self.http_port, self.metrics_port = ports or (free_port(), free_port(), free_port())
        self.log_path = Path(log_path) if log_path else None
        self.ort_threads = ort_threads
        self.proc: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60.0) -> TritonServer:
        cmd = [str(self.install.server), f"--model-repository={self.model_repository}",
               f"--backend-directory={self.install.backends}", "--pinned-memory-pool-byte-size=0",
               f"--grpc-port={self.grpc_port}", f"--http-port={self.http_port}",
               f"--metrics-port={self.metrics_port}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
               "--metrics-address=127.0.0.1", "--exit-timeout-secs=5", "--log-verbose=0"]
        env = {**os.environ, **self.install.env, "INSPECTOR_TRITON_ORT_THREADS": str(self.ort_threads),
               "OMP_NUM_THREADS": str(self.ort_threads)}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 — lives with the process
        try:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise InspectorError(f"tritonserver exited with {self.proc.returncode} before it was ready"
                                     + (f" (log: {self.log_path})" if self.log_path else ""))
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise InspectorError(f"tritonserver not ready within {timeout:g} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop the server and its stub processes (its whole process group)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        # the group may outlive its leader by a moment (stubs): make sure nothing stays behind
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None

    def __enter__(self) -> TritonServer:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
