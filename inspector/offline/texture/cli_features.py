"""``inspector features IMAGE`` — print the 281 named texture features of one image.

Meant for comparing with MaZda or another tool::

    inspector features tablet.png                    # name<TAB>value table
    inspector features tablet.png --json             # {"image", "features": {...}, "meta": {...}}
    inspector features tablet.png --roi auto --levels 64
    inspector features tablet.png --roi mask.png     # non-zero mask pixels = inside
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import BadFrameError, InspectorError


def register(sub: Any, groups: dict[str, Any]) -> None:
    """Add the ``features`` sub-command (``groups`` is unused: no train/evaluate verbs here).

    Idempotent: the command may be registered both from ``PLUGINS`` and by the texture plugin
    (``inspector.offline.texture.cli``); a second registration is a no-op instead of an argparse conflict.
    """
    if "features" in (getattr(sub, "choices", None) or {}):
        return
    p = sub.add_parser(
        "features",
        help="print the 281 MaZda-style texture features of one image",
        description="Compute the seed-001 texture features (GLCM, run length, histogram, AR, Haar) "
        "of one image after grayscale, 1 % contrast stretch and quantisation.",
    )
    p.add_argument("image", type=Path, help="image file (8/16-bit grey or RGB: PNG, TIFF, JPEG, BMP)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a name/value table")
    p.add_argument(
        "--roi",
        default=None,
        metavar="auto|MASK.png",
        help="region of interest: 'auto' (bright tablet on a dark background) or a mask image",
    )
    p.add_argument("--levels", type=int, default=64, help="grey levels after quantisation (default 64)")
    p.add_argument("--scales", type=int, default=8, help="Haar wavelet scales (default 8)")
    p.add_argument(
        "--distances",
        default="1,2,3,4,5",
        help="GLCM distances, comma separated (default 1,2,3,4,5)",
    )
    p.set_defaults(func=run)


def read_image(path: Path) -> np.ndarray:
    """Read an 8/16-bit grey or colour image as (H, W) or (H, W, 3) RGB, keeping the bit depth."""
    import cv2

    if not path.is_file():
        raise BadFrameError(f"no such image file: {path}", "io")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadFrameError(f"cannot decode image {path} (unsupported or corrupt file)", "io")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def _parse_distances(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise InspectorError(f"--distances must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from inspector.texture.features import extract

    image = read_image(args.image)
    roi: np.ndarray | str | None = None
    if args.roi is not None:
        roi = "auto" if args.roi == "auto" else read_image(Path(args.roi))
        if isinstance(roi, np.ndarray) and roi.ndim == 3:
            roi = roi.max(axis=2)
    fv = extract(
        image,
        levels=args.levels,
        roi=roi,
        distances=_parse_distances(args.distances),
        scales=args.scales,
    )
    if args.json:
        meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fv.meta.items()}
        print(json.dumps({"image": str(args.image), "features": fv.as_dict(), "meta": meta}, indent=1))
    else:
        width = max(len(n) for n in fv.names)
        for name, value in zip(fv.names, fv.values):
            print(f"{name:<{width}}  {value:.10g}")
        for w in fv.meta["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
    return 0
