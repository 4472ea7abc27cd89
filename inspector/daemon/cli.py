"""Daemon sub-commands: run, worker (remote), config check, subscribe, bench transport."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def register(sub, groups) -> None:
    p = sub.add_parser("run", help="run the inspection daemon")
    p.add_argument("--config", "-c", help="YAML config file (default: the embedded demo configuration)")
    p.add_argument("--duration", type=float, default=None, help="stop after SECONDS (default: run until signalled)")
    p.set_defaults(func=_run)

    w = sub.add_parser("worker", help="run the configured inspections for a daemon on another host")
    w.add_argument("--connect", required=True, metavar="tcp://HOST:PORT",
                   help="the daemon's transport.remote_listen (frames PORT, results PORT+1, commands PORT+2)")
    w.add_argument("--config", "-c", help="YAML config: inspections, models_dir, security keys")
    w.add_argument("--name", help="worker name (default r-<host>-<pid>)")
    w.set_defaults(func=_worker)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="what", metavar="WHAT", required=True)
    chk = csub.add_parser("check", help="validate a config file (and INSPECTOR_* environment) without starting")
    chk.add_argument("file", nargs="?", help="YAML config file (default: the embedded demo configuration)")
    chk.add_argument("--config", "-c", dest="config_opt", help="same as FILE")
    chk.add_argument("--print", action="store_true", help="print the effective configuration as JSON")
    chk.set_defaults(func=_config_check)

    s = sub.add_parser("subscribe", help="print published results, one JSON object per line")
    s.add_argument("--endpoint", default=None, help="PUB endpoint (default: publish.endpoint of --config)")
    s.add_argument("--config", "-c", help="config file to take the endpoint from")
    s.add_argument("--topic", action="append", default=[],
                   help="topic prefix, e.g. result.quality (repeatable; default: all results)")
    s.add_argument("--count", type=int, default=0, help="exit after N messages")
    s.set_defaults(func=_subscribe)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="what", metavar="WHAT", required=True)
    bt = bsub.add_parser("transport", help="cost of one hop of a frame through the queue vs numpy.copy")
    bt.add_argument("--width", type=int, default=2592)
    bt.add_argument("--height", type=int, default=1944)
    bt.add_argument("--frames", type=int, default=200)
    bt.add_argument("--transport", choices=["ipc", "tcp", "inproc"], default="ipc")
    bt.set_defaults(func=_bench_transport)


def _run(args: argparse.Namespace) -> int:
    from inspector.config import load_config
    from inspector.control.settings import control_config
    from inspector.daemon.control_hook import ControlHook
    from inspector.daemon.ops_hook import OpsHook
    from inspector.daemon.supervisor import Supervisor
    from inspector.line.hooks import hook_factories as line_hooks
    from inspector.line.settings import validate_all as validate_line
    from inspector.transport.security import security_config

    cfg = load_config(args.config)
    control_config(cfg), security_config(cfg), validate_line(cfg)  # validate the extension blocks before starting
    logging.getLogger().setLevel(cfg.log.level if not args.verbose else "DEBUG")
    sup = Supervisor(cfg)
    sup.hook_factories += [OpsHook, ControlHook, *line_hooks(cfg)]
    return sup.run(duration=args.duration)


def _config_check(args: argparse.Namespace) -> int:
    from inspector.config import load_config

    from inspector.audit.settings import audit_config
    from inspector.control.settings import control_config
    from inspector.line.settings import validate_all as validate_line
    from inspector.transport.security import security_config

    path = args.file or args.config_opt
    cfg = load_config(path)
    audit_config(cfg), control_config(cfg), security_config(cfg), validate_line(cfg)
    from inspector.acquisition import make_camera

    make_camera(cfg.camera, cfg.camera_id())  # producer file, replay folder (does not open the device)
    if args.print:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    print(f"ok: {path or 'embedded default'} is valid; sha256 {cfg.sha256()}", file=sys.stderr)
    return 0


def _worker(args: argparse.Namespace) -> int:
    import os
    import socket

    from inspector.config import load_config
    from inspector.daemon.remote import PREFIX
    from inspector.daemon.worker import run_remote_worker
    from inspector.errors import ConfigError
    from inspector.transport.security import is_loopback_endpoint, security_config

    cfg = load_config(args.config)
    connect = args.connect
    if not connect.startswith("tcp://") or not connect.rpartition(":")[2].isdigit():
        raise ConfigError(f"--connect: expected tcp://HOST:PORT, got {connect!r}")
    sec = security_config(cfg)
    if not is_loopback_endpoint(connect) and not sec.curve_server_public_key_file:
        raise ConfigError(f"--connect {connect}: a daemon on another host needs CURVE "
                          "(security.curve_server_public_key_file and curve_client_secret_key_file)")
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    name = name if name.startswith(PREFIX) else PREFIX + name
    logging.getLogger().setLevel(cfg.log.level)
    return run_remote_worker(cfg, connect, name)


def _subscribe(args: argparse.Namespace) -> int:
    import zmq

    from inspector.transport import topics

    endpoint = args.endpoint
    if endpoint is None:
        from inspector.config import load_config

        endpoint = load_config(args.config, check_inspections=False).publish.endpoint
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    for t in args.topic or ["result"]:
        sock.setsockopt(zmq.SUBSCRIBE, topics.subscription(t))
    sock.connect(endpoint)
    n = 0
    try:
        while args.count <= 0 or n < args.count:
            parts = sock.recv_multipart()
            try:
                header = json.loads(parts[1]) if len(parts) > 1 else {}
            except (ValueError, UnicodeDecodeError):
                header = {"malformed": True}
            header["topic"] = topics.topic_name(parts[0])
            if len(parts) > 2:
                header["payload_bytes"] = sum(len(p) for p in parts[2:])
            print(json.dumps(header, default=str), flush=True)
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(0)
        ctx.term()
    return 0


def _bench_transport(args: argparse.Namespace) -> int:
    from inspector.transport.bench import run_transport_bench

    run_transport_bench(args.width, args.height, args.frames, args.transport)
    return 0
