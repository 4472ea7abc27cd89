"""The ``inspector`` console script. Sub-commands live with their packages and are registered here.

Each plugin module exposes ``register(sub, groups)``: ``sub`` is the top-level sub-parser action,
``groups`` maps the shared verbs ("train", "evaluate") to their sub-parser actions. Plugins import
heavy libraries (TensorFlow, scikit-learn) inside their handlers only, so ``inspector --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from inspector import __version__
from inspector.errors import InspectorError

PLUGINS = [
    "inspector.daemon.cli",      # run, config check, subscribe, bench transport
    "inspector.offline.triton.cli",  # export triton
    "inspector.synth.cli",       # synth sem|tablets|sheet
    "inspector.offline.texture.cli",   # features, train texture, evaluate texture
    "inspector.offline.identity.cli",    # train identity, evaluate identity
    "inspector.offline.identity.cli_export",  # export identity, quantize identity, train identity-default
    "inspector.offline.identity.openset_cli",  # calibrate openset, evaluate openset, drift report
    "inspector.audit.cli",       # audit verify|export|prune
    "inspector.control.cli",     # control …, keys generate
    "inspector.line.cli",        # line-controller (reference PLC stand-in on the reject channel)
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inspector",
        description="Inline inspection daemon for pharmaceutical lines: run it, train and evaluate its "
                    "models, generate synthetic scenes, verify its audit trail, control it.")
    p.add_argument("--version", action="version", version=f"inspector {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser("train", help="train a model into the model repository")
    evaluate = sub.add_parser("evaluate", help="offline evaluation with reports")
    groups = {
        "train": train.add_subparsers(dest="what", metavar="WHAT", required=True),
        "evaluate": evaluate.add_subparsers(dest="what", metavar="WHAT", required=True),
    }
    for name in PLUGINS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(sub, groups)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except InspectorError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `inspector … | head`: the reader left; no traceback, no second error at exit
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
