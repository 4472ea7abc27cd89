"""Identity data set: class folders of full SEM frames → in-memory tiles, and frame-wise CV splits.

Layout: ``DATA_DIR/<class>/<frame>.png`` (one sub-folder per excipient; any of png, tif, tiff,
bmp, jpg). Every frame is cut by :func:`inspector.identity.tiling.frame_tiles` (data bar cropped,
fixed centred grid), and every tile remembers its source frame, so that splits are made by frame:
tiles of one frame never end up in two of train / validation / test.

No TensorFlow here (the tf.data pipeline lives in ``train.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.errors import BadFrameError, InspectorError
from inspector.identity.tiling import TILE, frame_tiles

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


class DatasetError(InspectorError):
    """The training data folder is missing, empty, unreadable or too small for the protocol."""


@dataclass
class TileDataset:
    """All tiles of a data set, with their class and source frame."""

    classes: list[str]  # class names = sub-folder names, sorted
    frames: list[Path]  # source frame files
    frame_labels: np.ndarray  # (n_frames,) class index of each frame
    tiles: np.ndarray  # (n_tiles, t, t) uint8 grey
    labels: np.ndarray  # (n_tiles,) class index
    frame_ids: np.ndarray  # (n_tiles,) index into ``frames``
    origins: list[list[tuple[int, int]]]  # per frame, (y, x) of its tiles
    tile: int = TILE

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def tile_indices(self, frame_idx: np.ndarray) -> np.ndarray:
        """Indices of every tile whose source frame is in ``frame_idx``."""
        return np.flatnonzero(np.isin(self.frame_ids, np.asarray(frame_idx)))

    def summary(self) -> str:
        per = np.bincount(self.frame_labels, minlength=self.num_classes)
        return (f"{len(self.frames)} frames ({per.min()}–{per.max()} per class), {len(self.tiles)} tiles "
                f"of {self.tile}², {self.num_classes} classes")


@dataclass(frozen=True)
class Split:
    """Frame indices of one fold; ``test`` may be empty (final training: train / validation only)."""

    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def list_frames(data_dir: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and (frame path, class index), sorted; raises :class:`DatasetError`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    frames: list[tuple[Path, int]] = []
    classes: list[str] = []
    for d in class_dirs:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            continue
        frames.extend((f, len(classes)) for f in files)
        classes.append(d.name)
    if len(classes) < 2:
        raise DatasetError(
            f"{root} needs one sub-folder of frames per class, at least 2 classes; found {len(classes)}")
    return classes, frames


def read_frame(path: Path) -> np.ndarray:
    """Read a frame unchanged (8/16-bit grey or colour, RGB order)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def load_dataset(data_dir: str | Path, *, tile: int = TILE, progress: bool = True) -> TileDataset:
    """Read every frame of ``data_dir`` and cut it into tiles (tqdm progress bar)."""
    from tqdm import tqdm

    classes, frames = list_frames(data_dir)
    tiles, labels, frame_ids, origins = [], [], [], []
    for i, (path, label) in enumerate(tqdm(frames, desc="tiling frames", unit="frame", disable=not progress)):
        try:
            t, o = frame_tiles(read_frame(path), tile)
        except BadFrameError as e:
            raise DatasetError(f"{path}: {e}") from None
        tiles.append(t)
        labels.append(np.full(len(t), label, np.int32))
        frame_ids.append(np.full(len(t), i, np.int32))
        origins.append(o)
    return TileDataset(
        classes=classes,
        frames=[p for p, _ in frames],
        frame_labels=np.array([lab for _, lab in frames], np.int32),
        tiles=np.concatenate(tiles),
        labels=np.concatenate(labels),
        frame_ids=np.concatenate(frame_ids),
        origins=origins,
        tile=tile,
    )


def dataset_sha256(frames: list[Path]) -> str:
    """sha256 over (class folder/file name, file sha256) of every frame: identifies the training data."""
    from inspector.modelrepo import sha256_file

    h = hashlib.sha256()
    for f in sorted(frames):
        h.update(f"{f.parent.name}/{f.name}:{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _per_class_chunks(frame_labels: np.ndarray, folds: int, seed: int) -> list[list[np.ndarray]]:
    """Per class, its frames shuffled (seeded) and cut into ``folds`` nearly equal chunks."""
    rng = np.random.default_rng(seed)
    chunks = []
    for c in np.unique(frame_labels):
        idx = np.flatnonzero(frame_labels == c)
        if len(idx) < folds:
            raise DatasetError(
                f"class {int(c)} has {len(idx)} frames; {folds}-fold cross-validation by frame needs at "
                f"least {folds} per class")
        chunks.append(np.array_split(rng.permutation(idx), folds))
    return chunks


def cv_splits(frame_labels: np.ndarray, folds: int = 5, seed: int = 0) -> list[Split]:
    """K-fold cross-validation by source frame, stratified by class, as in the paper.

    Per class, frames are cut into ``folds`` chunks; fold k tests on chunk k, validates on chunk
    k+1 (mod folds) and trains on the rest. With 10 frames per class and 5 folds: 6 train,
    2 validation and 2 test frames per class, every frame tested exactly once.
    """
    if folds < 3:
        raise DatasetError(f"cross-validation needs at least 3 folds (train/validation/test), got {folds}")
    chunks = _per_class_chunks(np.asarray(frame_labels), folds, seed)
    splits = []
    for k in range(folds):
        test = np.concatenate([c[k] for c in chunks])
        val = np.concatenate([c[(k + 1) % folds] for c in chunks])
        train = np.concatenate([c[j] for c in chunks for j in range(folds) if j not in (k, (k + 1) % folds)])
        splits.append(Split(k, np.sort(train), np.sort(val), np.sort(test)))
    return splits


def train_val_split(frame_labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Final-training split by frame: per class, ``val_fraction`` of its frames (≥ 1) validate."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(frame_labels):
        idx = rng.permutation(np.flatnonzero(frame_labels == c))
        if len(idx) < 2:
            raise DatasetError(f"class {int(c)} has {len(idx)} frame(s); need at least 2 (train + validation)")
        n_val = min(max(1, int(round(val_fraction * len(idx)))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return Split(0, np.sort(np.concatenate(train)), np.sort(np.concatenate(val)), np.array([], np.int64))


def subset_per_class(data: TileDataset, n: int) -> TileDataset:
    """The first ``n`` frames (file order) of every class, with their tiles (smoke runs and tests)."""
    keep = np.concatenate([np.flatnonzero(data.frame_labels == c)[:n] for c in range(data.num_classes)])
    remap = {int(old): new for new, old in enumerate(keep)}
    tiles = np.flatnonzero(np.isin(data.frame_ids, keep))
    return TileDataset(classes=data.classes, frames=[data.frames[i] for i in keep],
                       frame_labels=data.frame_labels[keep], tiles=data.tiles[tiles], labels=data.labels[tiles],
                       frame_ids=np.array([remap[int(f)] for f in data.frame_ids[tiles]], np.int32),
                       origins=[data.origins[i] for i in keep], tile=data.tile)
