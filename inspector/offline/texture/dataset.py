"""Image-folder datasets for the texture experiments, and their feature table (cached by file sha256).

Layout: ``DATA_DIR/<class>/…/*.png|jpg|…`` — one sub-folder per class, images found recursively
(so ``magnetic-tile/MT_Blowhole/Imgs/*.jpg`` works). Two rules keep ground-truth masks out:
files whose stem ends in ``_mask``/``_gt``/``_label`` or that sit in a ``mask(s)``/``gt`` folder
are ignored, and when several files in one folder share a stem (``x.jpg`` + ``x.png``, as in the
magnetic-tile set whose ``.png`` files are the defect masks) only the first by the extension
priority of :data:`IMAGE_EXTS` is kept.

The negative ("good") class is the folder whose name contains a token among
:data:`NEGATIVE_TOKENS` (``MT_Free``, ``good``, ``normal``) unless named explicitly; every other
folder is a positive (defect) class unless ``positives`` narrows them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import BadFrameError, InspectorError
from inspector.texture.describe import (  # noqa: F401  (describe, limit_size re-exported)
    DEFAULT_FAMILIES,
    describe,
    describe_families,
    limit_size,
    parse_families,
    roi_arg,
)

#: accepted image extensions, in the priority used when several files share a stem
IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".png")
NEGATIVE_TOKENS: frozenset[str] = frozenset({"good", "normal", "free", "ok", "nondefective", "ndt", "pass"})
_MASK_STEM = re.compile(r"(_|-)(mask|gt|label)s?$", re.IGNORECASE)
_MASK_DIRS = frozenset({"mask", "masks", "gt", "ground_truth", "groundtruth", "labels"})


class DatasetError(InspectorError):
    """An image-folder dataset that cannot be used (missing, empty class, ambiguous classes…)."""


@dataclass
class ImageFolder:
    """A scanned dataset: class name -> sorted image paths, and the binary roles of the classes."""

    root: Path
    classes: dict[str, list[Path]]
    negative: str | None  # None only for a multi-class set without a good class
    positives: list[str]

    @property
    def n_images(self) -> int:
        return sum(len(v) for v in self.classes.values())


@dataclass
class FeatureTable:
    """Features of every usable image; images the extractor refused are listed in ``skipped``."""

    names: tuple[str, ...]
    X: np.ndarray  # (n, n_features) float64, all finite
    labels: list[str]  # class folder of each row
    paths: list[str]  # relative to the dataset root
    sha256: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "class", "reason"}
    params: dict[str, Any] = field(default_factory=dict)

    def data_sha256(self) -> str:
        return data_sha256(self.sha256)


def data_sha256(file_hashes: list[str]) -> str:
    """Identity of a training set: sha256 of its sorted file hashes, one per line."""
    return hashlib.sha256("\n".join(sorted(file_hashes)).encode()).hexdigest()


def _is_mask(p: Path, root: Path) -> bool:
    rel_dirs = {d.lower() for d in p.relative_to(root).parts[:-1]}
    return bool(_MASK_STEM.search(p.stem)) or bool(rel_dirs & _MASK_DIRS)


def _images_in(class_dir: Path) -> list[Path]:
    by_stem: dict[tuple[Path, str], Path] = {}
    for p in sorted(class_dir.rglob("*")):
        ext = p.suffix.lower()
        if ext not in IMAGE_EXTS or not p.is_file() or p.name.startswith(".") or _is_mask(p, class_dir):
            continue
        key = (p.parent, p.stem)
        cur = by_stem.get(key)
        if cur is None or IMAGE_EXTS.index(ext) < IMAGE_EXTS.index(cur.suffix.lower()):
            by_stem[key] = p
    return sorted(by_stem.values())


def _is_negative_name(name: str) -> bool:
    return bool(set(re.split(r"[^a-z0-9]+", name.lower())) & NEGATIVE_TOKENS)


def scan_image_folder(
    root: str | Path,
    *,
    negative: str | None = None,
    positives: list[str] | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
    require_negative: bool = True,
    min_classes: int = 2,
) -> ImageFolder:
    """Scan ``root``; raise :class:`DatasetError` on a missing root, an empty class or unclear roles.

    ``max_per_class`` keeps a seeded random sample of that many images per class (quick runs).
    ``min_classes=1`` (one-class training): a lone good folder is fine.
    ``require_negative=False`` (multi-class typing): a data set without a good class is fine
    (``negative`` is then None and every folder is a defect class).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < min_classes:
        raise DatasetError(f"{root} needs one sub-folder per class (at least {min_classes}), found {len(class_dirs)}")
    classes: dict[str, list[Path]] = {}
    for d in class_dirs:
        imgs = _images_in(d)
        if not imgs:
            raise DatasetError(f"class folder {d} contains no images ({', '.join(IMAGE_EXTS)})")
        if max_per_class is not None and len(imgs) > max_per_class:
            rng = np.random.default_rng([seed, len(classes)])
            imgs = sorted(imgs[i] for i in rng.choice(len(imgs), size=max_per_class, replace=False))
        classes[d.name] = imgs
    if negative is None:
        cands = [c for c in classes if _is_negative_name(c)]
        if not cands and not require_negative:
            return ImageFolder(root=root, classes=classes, negative=None, positives=list(classes))
        if len(cands) != 1:
            found = ", ".join(cands) if cands else "none"
            raise DatasetError(
                f"cannot tell the negative (good) class among {', '.join(classes)} (candidates: {found}); "
                "name it with --negative"
            )
        negative = cands[0]
    elif negative not in classes:
        raise DatasetError(f"negative class {negative!r} is not a folder of {root} (has: {', '.join(classes)})")
    if positives:
        bad = [p for p in positives if p not in classes or p == negative]
        if bad:
            raise DatasetError(f"positive class(es) {', '.join(bad)} not usable (folders: {', '.join(classes)})")
        pos = list(dict.fromkeys(positives))
    else:
        pos = [c for c in classes if c != negative]
    keep = {negative, *pos}
    return ImageFolder(root=root, classes={c: v for c, v in classes.items() if c in keep}, negative=negative,
                       positives=pos)


# --------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------
def load_gray(path: str | Path) -> np.ndarray:
    """Read an image file as a (H, W) grey array (uint8 or uint16). Raises BadFrameError if unreadable."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadFrameError(f"cannot decode image {path}", "decode")
    if img.ndim == 3:
        code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(img.shape[2])
        if code is None:
            raise BadFrameError(f"unsupported channel count {img.shape[2]} in {path}", "pixel_format")
        img = cv2.cvtColor(img, code)
    if img.dtype not in (np.uint8, np.uint16):
        raise BadFrameError(f"unsupported pixel type {img.dtype} in {path}", "pixel_format")
    return img


# --------------------------------------------------------------------------------------------------
# feature table with a CSV cache keyed by file sha256
# --------------------------------------------------------------------------------------------------
_FIXED = ("sha256", "path", "class", "status", "reason")


def _read_cache(csv_path: Path, params: dict[str, Any]) -> tuple[tuple[str, ...] | None, dict[str, dict]]:
    meta_path = csv_path.with_suffix(".meta.json")
    if not csv_path.is_file() or not meta_path.is_file():
        return None, {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("params") != params:
            return None, {}
        rows: dict[str, dict] = {}
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            names = tuple(header[len(_FIXED):])
            for r in reader:
                rec = dict(zip(_FIXED, r[: len(_FIXED)]))
                rec["values"] = np.array([float(v) for v in r[len(_FIXED):]]) if rec["status"] == "ok" else None
                rows[rec["sha256"]] = rec
        return names, rows
    except (OSError, ValueError, StopIteration, json.JSONDecodeError):
        return None, {}  # a damaged cache is rebuilt, never trusted


def _write_cache(csv_path: Path, params: dict[str, Any], names: tuple[str, ...], rows: list[dict]) -> None:
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*_FIXED, *names])
        for r in rows:
            vals = [repr(float(v)) for v in r["values"]] if r["status"] == "ok" else [""] * len(names)
            w.writerow([r["sha256"], r["path"], r["class"], r["status"], r["reason"], *vals])
    tmp.replace(csv_path)
    csv_path.with_suffix(".meta.json").write_text(json.dumps({"params": params}, indent=2) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def family_cache_path(cache: Path, family: str) -> Path:
    """Cache file of one feature family: ``cache`` itself for ``mazda``, ``<stem>-<family>.csv`` otherwise."""
    return cache if family == "mazda" else cache.with_name(f"{cache.stem}-{family}{cache.suffix or '.csv'}")


def extract_table(
    folder: ImageFolder,
    *,
    levels: int = 64,
    roi: str | None = None,
    max_side: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
    families: tuple[str, ...] = DEFAULT_FAMILIES,
) -> FeatureTable:
    """Extract the texture features of every image once (tqdm bar), reusing ``cache`` rows whose file
    sha256 and extraction parameters match (one cache file per feature family, so adding ``lbp``
    never recomputes ``mazda``). Unreadable or indescribable images are skipped and listed."""
    from tqdm import tqdm

    families = parse_families(families)
    params = {"levels": int(levels), "roi": "auto" if roi_arg(roi) else "none", "max_side": max_side}
    fam_params = {f: params if f == "mazda" else {**params, "family": f} for f in families}
    cache_path = Path(cache) if cache else None
    cached: dict[str, dict[str, dict]] = {}
    names: dict[str, tuple[str, ...] | None] = {}
    for f in families:
        got = _read_cache(family_cache_path(cache_path, f), fam_params[f]) if cache_path else (None, {})
        names[f], cached[f] = got
    rows: dict[str, list[dict]] = {f: [] for f in families}
    items = [(c, p) for c, ps in folder.classes.items() for p in ps]
    n_cached = 0
    for cls, path in tqdm(items, desc="texture features", unit="img", disable=not progress):
        digest = _sha256(path)
        rel = str(path.relative_to(folder.root))
        hits = {f: cached[f].get(digest) for f in families}
        missing = tuple(f for f in families if hits[f] is None)
        if not missing:
            n_cached += 1
        got: dict[str, Any] = {}
        reason = ""
        if missing:
            try:
                got = describe_families(load_gray(path), levels=levels, roi=roi, max_side=max_side, families=missing)
            except BadFrameError as e:
                reason = str(e)
        for f in families:
            if hits[f] is not None:
                rows[f].append({**hits[f], "path": rel, "class": cls})
            elif reason:
                rows[f].append({"sha256": digest, "path": rel, "class": cls, "status": "skipped", "reason": reason,
                                "values": None})
            else:
                fn, values = got[f]
                if names[f] is None:
                    names[f] = fn
                elif fn != names[f]:
                    raise DatasetError(f"feature names changed between images (at {rel}); delete the cache "
                                       f"{family_cache_path(cache_path, f) if cache_path else ''}")
                rows[f].append({"sha256": digest, "path": rel, "class": cls, "status": "ok", "reason": "",
                                "values": values})
    for f in families:
        if names[f] is None:
            raise DatasetError(f"no image of {folder.root} could be described (all {len(rows[f])} skipped)")
    if cache_path is not None:  # keep rows of images outside this run (e.g. a quick run's sample)
        for f in families:
            seen = {r["sha256"] for r in rows[f]}
            _write_cache(family_cache_path(cache_path, f), fam_params[f], names[f],
                         rows[f] + [r for d, r in cached[f].items() if d not in seen])
    n = len(items)
    ok_rows = [i for i in range(n) if all(rows[f][i]["status"] == "ok" for f in families)]
    all_names = tuple(nm for f in families for nm in names[f])  # type: ignore[union-attr]
    first = rows[families[0]]
    X = (np.hstack([np.vstack([rows[f][i]["values"] for i in ok_rows]) for f in families]) if ok_rows
         else np.empty((0, len(all_names))))
    skipped = []
    for i in range(n):
        bad = [rows[f][i] for f in families if rows[f][i]["status"] != "ok"]
        if bad:
            skipped.append({"path": first[i]["path"], "class": first[i]["class"], "reason": bad[0]["reason"]})
    table = FeatureTable(
        names=all_names,
        X=X,
        labels=[first[i]["class"] for i in ok_rows],
        paths=[first[i]["path"] for i in ok_rows],
        sha256=[first[i]["sha256"] for i in ok_rows],
        skipped=skipped,
        params={**params, "families": list(families), "cached": n_cached},
    )
    for c in folder.classes:
        if c not in table.labels:
            raise DatasetError(f"class {c!r}: every image was skipped ({sum(s['class'] == c for s in table.skipped)})")
    return table
