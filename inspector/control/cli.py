"""``inspector control …`` and ``inspector keys generate`` (plugin module: ``inspector.control.cli``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from inspector.errors import ConfigError

_VERBS = {  # CLI verb -> (protocol command, help)
    "status": ("status", "show the daemon's state"),
    "pause": ("pause", "stop acquiring frames until resume (frames in flight are still inspected)"),
    "resume": ("resume", "resume inspecting"),
    "set-lot": ("set_lot", "set the lot id (and recipe) stamped on every following frame"),
    "set-expected": ("set_expected", "set the expected excipient for identity checks"),
    "reload": ("reload_model", "reload an inspection's model (verified before it is swapped in)"),
}


def register(sub: Any, groups: dict[str, Any]) -> None:
    control = sub.add_parser("control", help="send a command to the running daemon (audited)")
    verbs = control.add_subparsers(dest="control_cmd", metavar="COMMAND", required=True)
    for verb, (cmd, help_) in _VERBS.items():
        p = verbs.add_parser(verb, help=help_)
        if verb == "set-lot":
            p.add_argument("lot")
            p.add_argument("--recipe")
        elif verb == "set-expected":
            p.add_argument("excipient", metavar="NAME")
        elif verb == "reload":
            p.add_argument("inspection")
            p.add_argument("--version", dest="model_version", help="model version (default: the newest)")
        p.add_argument("--endpoint", help="control endpoint (default: control.endpoint from the config)")
        p.add_argument("--config", help="configuration file (endpoint, CURVE keys)")
        p.add_argument("--user", help="who is asking (default: login@host), recorded in the audit trail")
        p.add_argument("--timeout", type=float, help="seconds to wait for the reply")
        p.set_defaults(func=_control, protocol_cmd=cmd)

    keys = sub.add_parser("keys", help="CURVE key management")
    kv = keys.add_subparsers(dest="keys_cmd", metavar="ACTION", required=True)
    g = kv.add_parser("generate", help="write a CURVE key pair NAME.key (public) and NAME.key_secret")
    g.add_argument("dir")
    g.add_argument("--name", default="server", help="certificate name (default: server)")
    g.set_defaults(func=_keys_generate)


def command_args(args: argparse.Namespace) -> dict[str, Any]:
    cmd = args.protocol_cmd
    if cmd == "set_lot":
        return {"lot": args.lot, "recipe": args.recipe}
    if cmd == "set_expected":
        return {"excipient": args.excipient}
    if cmd == "reload_model":
        return {"inspection": args.inspection, "version": args.model_version}
    return {}


def _control(args: argparse.Namespace) -> int:
    from inspector.control.client import send_command
    from inspector.control.settings import DEFAULT_ENDPOINT, control_config
    from inspector.transport.security import security_config

    endpoint, timeout, security = args.endpoint or DEFAULT_ENDPOINT, 5.0, None
    if args.config or not args.endpoint:
        from inspector.config import load_config

        cfg = load_config(args.config, check_inspections=False)
        ccfg = control_config(cfg)
        endpoint = args.endpoint or ccfg.endpoint
        timeout = ccfg.timeout_s
        security = security_config(cfg)
    if args.timeout is not None:
        if not args.timeout > 0:
            raise ConfigError(f"--timeout must be > 0, got {args.timeout}")
        timeout = args.timeout
    reply = send_command(endpoint, args.protocol_cmd, command_args(args), user=args.user,
                         timeout_s=timeout, security=security)
    print(json.dumps(reply, indent=2, sort_keys=True, ensure_ascii=False))
    return 0 if reply.get("ok") else 1


def _keys_generate(args: argparse.Namespace) -> int:
    import zmq.auth

    from inspector.errors import InspectorError

    name = args.name
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name: expected a plain file name, got {name!r}")
    d = Path(args.dir).expanduser()
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise ConfigError(f"{p} already exists; refusing to overwrite a key")
    try:
        d.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            pub, sec = zmq.auth.create_certificates(str(d), name)
        finally:
            os.umask(old)
        os.chmod(sec, 0o600)
        os.chmod(pub, 0o644)
    except OSError as e:
        raise InspectorError(f"cannot write keys in {d}: {e.strerror or e}") from None
    print(f"public key: {pub}   (copy to the peers: a client's .key goes into curve_allowed_clients_dir)")
    print(f"secret key: {sec}   (mode 600; never copy it off this machine)")
    return 0
