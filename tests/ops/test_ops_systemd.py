"""systemd/inspector.service: what it promises, ``systemd-analyze verify`` clean, exposure <= 3.0."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "inspector.service"
SYSUSERS = REPO / "systemd" / "inspector.conf"
EXEC = "/opt/inspector/venv/bin/inspector"
MAX_EXPOSURE = 3.0


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (comments and blank lines dropped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"unparsable line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT)


def test_service_contract(unit):
    svc = unit["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecStart"] == f"{EXEC} run --config /etc/inspector/config.yaml"
    assert one["Restart"] == "on-failure"
    assert one["WatchdogSec"].rstrip("s").isdigit() and int(one["WatchdogSec"].rstrip("s")) >= 10
    assert one["User"] == "inspector"
    for d in ("StateDirectory", "RuntimeDirectory", "LogsDirectory", "ConfigurationDirectory"):
        assert one[d] == "inspector", d
    env = dict(e.split("=", 1) for e in svc["Environment"])
    # the daemon's directories are the ones systemd creates and makes writable
    assert env["INSPECTOR_STATE_DIR"] == "/var/lib/inspector"
    assert env["INSPECTOR_RUNTIME_DIR"] == "/run/inspector"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_hardening_and_device_access(unit):
    svc = unit["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
                       "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
                       "DevicePolicy": "closed", "CapabilityBoundingSet": ""}.items():
        assert one[key] == value, key
    assert "PrivateDevices" not in svc  # cameras and GPUs come through DeviceAllow= instead
    families = set(one["RestrictAddressFamilies"].split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families  # ZeroMQ ipc:// and tcp://, GigE Vision
    assert "AF_PACKET" not in families
    allowed = {d.split()[0] for d in svc["DeviceAllow"]}
    assert {"char-usb_device", "char-nvidia-frontend", "char-nvidia-uvm"} <= allowed
    assert set(one["SupplementaryGroups"].split()) == {"video", "plugdev"}


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd) — unit not verified here")
    return exe


def _fake_root(tmp_path: Path) -> Path:
    """A root with the host's unit library, the unit, and an executable where the venv will be."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/inspector.service")
    exe = root / EXEC.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    for lib in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(lib, "multi-user.target").exists():
            shutil.copytree(lib, root / "usr/lib/systemd/system", symlinks=True)
            break
    else:
        pytest.skip("no systemd unit library (multi-user.target) on this host")
    return root


def test_systemd_analyze_verify_is_clean(tmp_path):
    exe = _systemd_analyze()
    root = _fake_root(tmp_path)
    r = subprocess.run([exe, "verify", f"--root={root}", "inspector.service"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "Failed to" in r.stderr and "inspector.service:" not in r.stderr:
        pytest.skip(f"systemd-analyze verify cannot run here: {r.stderr.strip()[:200]}")
    # warnings (unknown keys, unparsable values) go to stderr with exit status 0: both must be clean
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_verify_would_catch_a_broken_unit(tmp_path):
    """The verify set-up above is not vacuous: a typo and a missing binary are reported."""
    exe = _systemd_analyze()
    root = _fake_root(tmp_path)
    path = root / "etc/systemd/system/inspector.service"
    path.write_text(path.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    (root / EXEC.lstrip("/")).unlink()
    r = subprocess.run([exe, "verify", f"--root={root}", "inspector.service"],
                       capture_output=True, text=True, timeout=60)
    assert "Unknown key" in r.stderr and "WatchdogSecs" in r.stderr
    assert "is not executable" in r.stderr and r.returncode != 0


def test_security_exposure_at_most_3(tmp_path):
    exe = _systemd_analyze()
    r = subprocess.run([exe, "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}",
                        "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for inspector\.service:\s*([0-9.]+)", r.stdout)
    if m is None:
        pytest.skip(f"systemd-analyze security --offline not supported here: {(r.stderr or r.stdout)[:200]}")
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, r.stdout
    assert r.returncode == 0, r.stderr


def test_sysusers_file_creates_the_account(tmp_path):
    exe = shutil.which("systemd-sysusers")
    if exe is None:
        pytest.skip("systemd-sysusers not installed (apt-get install systemd)")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nvideo:x:44:\n")
    r = subprocess.run([exe, "--dry-run", f"--root={root}", str(SYSUSERS)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert re.search(r"Creating user '?inspector'?", out), out
    assert "plugdev" in out  # created where the distribution has none
