"""``inspector synth sem|tablets|sheet``: write synthetic datasets and contact sheets."""

from __future__ import annotations

import argparse
from typing import Any


def _nonneg(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v!r}") from None
    if i < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v!r}")
    return i


def _positive(v: str) -> int:
    i = _nonneg(v)
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return i


def _sem(args: argparse.Namespace) -> int:
    from inspector.synth.dataset import write_sem_dataset

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    out = write_sem_dataset(args.out_dir, args.per_class, args.seed, lot=args.lot, data_bar=args.data_bar,
                            classes=classes, progress=not args.no_progress, size_factor=args.size_factor,
                            aspect_factor=args.aspect_factor)
    print(f"wrote SEM dataset to {out} (params.csv, params.json)")
    return 0


def _tablets(args: argparse.Namespace) -> int:
    from inspector.synth.dataset import write_tablet_dataset

    out = write_tablet_dataset(args.out_dir, args.per_class, args.seed, view=args.view, progress=not args.no_progress)
    print(f"wrote tablet dataset to {out} (params.csv, params.json)")
    return 0


def _sheet(args: argparse.Namespace) -> int:
    from inspector.synth.sheet import write_contact_sheet

    out = write_contact_sheet(args.out_png, args.kind, args.seed, lot=args.lot, view=args.view, data_bar=args.data_bar)
    print(f"wrote contact sheet {out}")
    return 0


def register(sub: Any, groups: dict[str, Any]) -> None:
    """Add ``inspector synth …`` to the top-level sub-parsers."""
    p = sub.add_parser("synth", help="synthetic SEM excipient scenes and tablet surfaces")
    ss = p.add_subparsers(dest="synth_what", metavar="WHAT", required=True)

    sem = ss.add_parser("sem", help="write an SEM image-folder dataset (one sub-folder per excipient)")
    sem.add_argument("out_dir", metavar="OUT_DIR")
    sem.add_argument("--per-class", type=_positive, required=True, help="images per class")
    sem.add_argument("--seed", type=_nonneg, default=0)
    sem.add_argument("--lot", type=_nonneg, default=0, help="lot number: 0 nominal, others drift slightly")
    sem.add_argument("--size-factor", type=float, default=None, metavar="F",
                     help="the lot's particle-size factor, set explicitly (0.5..2; default: drawn from --lot)")
    sem.add_argument("--aspect-factor", type=float, default=None, metavar="F",
                     help="the lot's aspect-ratio factor (elongation − 1 scaled), set explicitly (0.5..2)")
    sem.add_argument("--data-bar", action="store_true", help="add the 64-row SEM data bar (1280x1024 frames)")
    sem.add_argument("--classes", default=None, help="comma-separated class names or slugs (default: all)")
    sem.add_argument("--no-progress", action="store_true")
    sem.set_defaults(func=_sem)

    tab = ss.add_parser("tablets", help="write a tablet-surface image-folder dataset (good + 5 defect classes)")
    tab.add_argument("out_dir", metavar="OUT_DIR")
    tab.add_argument("--per-class", type=_positive, required=True, help="images per class")
    tab.add_argument("--seed", type=_nonneg, default=0)
    tab.add_argument("--view", choices=("whole", "closeup"), default="whole")
    tab.add_argument("--no-progress", action="store_true")
    tab.set_defaults(func=_tablets)

    sh = ss.add_parser("sheet", help="contact sheet PNG: one labelled tile per class")
    sh.add_argument("out_png", metavar="OUT.png")
    sh.add_argument("--kind", choices=("sem", "tablets"), default="sem")
    sh.add_argument("--seed", type=_nonneg, default=0)
    sh.add_argument("--lot", type=_nonneg, default=0)
    sh.add_argument("--view", choices=("whole", "closeup"), default="whole")
    sh.add_argument("--data-bar", action="store_true")
    sh.set_defaults(func=_sheet)
