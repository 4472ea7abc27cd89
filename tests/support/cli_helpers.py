"""Run one CLI plugin in-process, as ``inspector.cli.main`` does, restricted to that plugin."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from inspector.errors import InspectorError


def run_plugin_cli(register: Callable[[Any, dict], None], argv: list[str]) -> int:
    """Parse ``argv`` with only ``register``'s sub-commands; user errors print ``error: …`` (stdout)."""
    p = argparse.ArgumentParser(prog="inspector")
    register(p.add_subparsers(dest="command"), {})
    args = p.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InspectorError as e:
        print(f"error: {e}")
        return e.exit_code
