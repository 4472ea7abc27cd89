"""An address already in use (publisher, metrics, control channel) is a one-line error naming the
configuration key and the address — no traceback, exit code 2, nothing left running."""

from __future__ import annotations

import socket

import pytest

from daemon_helpers import run_cli, write_config


@pytest.mark.parametrize("key", ["publish.endpoint", "metrics.listen", "control.endpoint"])
def test_address_in_use_is_one_line_naming_key_and_address(tmp_path, key):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        block, field = key.split(".")
        value = f"127.0.0.1:{port}" if key == "metrics.listen" else f"tcp://127.0.0.1:{port}"
        cfg_path, _ = write_config(tmp_path, **{block: {field: value}})
        r = run_cli("run", "--config", str(cfg_path), "--duration", "1", timeout=120)
    finally:
        squatter.close()
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert len(err) == 1 and key in err[0] and str(port) in err[0] and "in use" in err[0], r.stderr[-2000:]
