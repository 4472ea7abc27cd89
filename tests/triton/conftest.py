"""A real Triton Inference Server for the tests (session-scoped), from its own venv.

``deploy/ci/install-triton.sh`` creates the environment (``.ci/run`` calls it); tests that need the
server skip with that command when it is absent. The test repository serves the default identity
model through the python backend (the bundled server has no onnxruntime backend), exported by
``inspector export triton --backend python`` with max_batch_size 20, so a request of more than one
frame's tiles must be split into chunks.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.modelrepo import Manifest, ModelDir, load_model_dir, resolve, write_model_dir
from inspector.offline.triton.export import ExportOptions, write_repository
from inspector.offline.triton.server import INSTALL_HINT, TritonInstall, TritonServer, find_install

MODEL = "excipient-identity-default"
OTHER = "identity-other"  # a different artifact, served under another name (sha256 refusal)
MAX_BATCH = 20
#: the tests serve version 1 (the small CNN: quick on the CPU test server); any version works the same
VERSION = "1"


@pytest.fixture(scope="session")
def models_dir(repo_root: Path) -> Path:
    return repo_root / "models"


@pytest.fixture(scope="session")
def model_dir(models_dir: Path) -> ModelDir:
    return resolve(models_dir, MODEL, VERSION)


def other_model(md: ModelDir, dst: Path) -> ModelDir:
    """A copy of the model whose ONNX file differs by its doc string (a genuinely different sha256)."""
    import onnx

    dst.mkdir(parents=True)
    for f in md.manifest.artifacts:
        shutil.copyfile(md.path / f, dst / f)
    m = onnx.load(str(dst / "model.onnx"))
    m.doc_string = "not the model the line PC verified"
    onnx.save(m, str(dst / "model.onnx"))
    data = copy.deepcopy(md.manifest.to_dict())  # write_model_dir rewrites its artifacts dict in place
    data.update(name=OTHER, created="")
    return write_model_dir(dst, Manifest.from_dict(data))


@pytest.fixture(scope="session")
def triton_install() -> TritonInstall:
    install = find_install()
    if install is None:
        pytest.skip(f"no Triton server environment (.venv-triton or $INSPECTOR_TRITON_VENV): run {INSTALL_HINT}")
    return install


@pytest.fixture(scope="session")
def triton_repo(tmp_path_factory: pytest.TempPathFactory, model_dir: ModelDir) -> Path:
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("triton-repo")
    opts = ExportOptions(backend="python", instance_kind="cpu", max_batch_size=MAX_BATCH, queue_delay_us=500)
    write_repository(model_dir, root, opts)
    other = other_model(model_dir, tmp_path_factory.mktemp("other") / "1")
    write_repository(load_model_dir(other.path), root, opts)
    return root


@pytest.fixture(scope="session")
def swapped_repo(tmp_path_factory: pytest.TempPathFactory, model_dir: ModelDir) -> Path:
    """A repository serving a different artifact under the default model's name (a swapped server)."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("swapped-repo")
    other = other_model(model_dir, tmp_path_factory.mktemp("swapped") / "1")
    write_repository(load_model_dir(other.path), root, ExportOptions(
        backend="python", name=MODEL, instance_kind="cpu", max_batch_size=MAX_BATCH))
    return root


@pytest.fixture(scope="session")
def triton_server(triton_install: TritonInstall, triton_repo: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    log = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    with TritonServer(triton_install, triton_repo, log_path=log) as server:
        yield server
