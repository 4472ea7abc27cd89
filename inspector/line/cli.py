"""``inspector line-controller``: the reference line controller (plugin module ``inspector.line.cli``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from inspector.errors import ConfigError


def register(sub: Any, groups: dict[str, Any]) -> None:
    p = sub.add_parser("line-controller", help="reference line controller (PLC stand-in) on the reject channel: "
                                               "acknowledges reject commands and logs them")
    p.add_argument("--endpoint", help="reject channel endpoint (default: line.reject_endpoint of --config)")
    p.add_argument("--config", "-c", help="configuration file (endpoint, CURVE keys)")
    p.add_argument("--name", default="plc-1", help="controller name (its ZeroMQ routing id; default plc-1)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="acknowledge after this many milliseconds")
    p.add_argument("--never-ack", action="store_true", help="receive and log, never acknowledge")
    p.add_argument("--count", type=int, default=0, help="exit after N distinct commands")
    p.add_argument("--duration", type=float, default=None, help="exit after SECONDS")
    p.add_argument("--quiet", action="store_true", help="no JSON lines on stdout")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from inspector.line.controller import run_controller

    if args.delay_ms < 0:
        raise ConfigError(f"--delay-ms must be >= 0, got {args.delay_ms}")
    endpoint, security = args.endpoint, None
    if args.config or not endpoint:
        from inspector.config import load_config
        from inspector.line.settings import line_config
        from inspector.transport.security import security_config

        cfg = load_config(args.config, check_inspections=False)
        endpoint = endpoint or line_config(cfg).reject_endpoint
        security = security_config(cfg)
        if not endpoint:
            raise ConfigError("line.reject_endpoint is not set (give --endpoint or a --config that sets it)")
    run_controller(endpoint, name=args.name, delay_ms=args.delay_ms, never_ack=args.never_ack, security=security,
                   out=None if args.quiet else sys.stdout, count=args.count, duration=args.duration)
    return 0
