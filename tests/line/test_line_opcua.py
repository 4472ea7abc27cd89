"""OPC UA server with a real asyncua client against `inspector run`: browse the VisionSystem,
subscribe to the result event, call methods (anonymous: refused; logged-in user: applied), and find
both calls in the audit trail with the OPC UA caller."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

asyncua = pytest.importorskip("asyncua", reason="asyncua not installed (pip install asyncua)")
from asyncua import Client, ua  # noqa: E402

from daemon_helpers import free_port, wait_ready  # noqa: E402
from line_helpers import REJECTING_QUALITY, Daemon, audit_records, write_config  # noqa: E402
from inspector.line.opcua_server import hash_password  # noqa: E402

pytestmark = pytest.mark.timeout(240)
NS = "urn:inspector:machinevision"


class _Events:
    def __init__(self):
        self.events = []

    def event_notification(self, event):
        self.events.append(event)


async def _connect(url: str, user: str | None = None, password: str | None = None, timeout: float = 90) -> Client:
    end = time.monotonic() + timeout
    while True:  # asyncua builds its address space in a few seconds after the daemon starts
        c = Client(url, timeout=10)
        if user:
            c.set_user(user)
            c.set_password(password)
        try:
            await c.connect()
            return c
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.5)


async def _session(url: str) -> dict:
    out: dict = {}
    anon = await _connect(url)
    try:
        idx = await anon.get_namespace_index(NS)
        vs = await anon.nodes.objects.get_child([f"{idx}:VisionSystem"])
        out["children"] = sorted([(await n.read_browse_name()).Name for n in await vs.get_children()])
        state = await vs.get_child([f"{idx}:SystemState"])
        end = time.monotonic() + 30
        while await state.read_value() != "Operational" and time.monotonic() < end:
            await asyncio.sleep(0.2)
        out["state_before"] = await state.read_value()
        handler = _Events()
        sub = await anon.create_subscription(50, handler)
        etype = await anon.nodes.root.get_child(["0:Types", "0:EventTypes", "0:BaseEventType",
                                                 f"{idx}:ResultReadyEventType"])
        await sub.subscribe_events(vs, etype)
        end = time.monotonic() + 20
        while len(handler.events) < 5 and time.monotonic() < end:
            await asyncio.sleep(0.1)
        out["events"] = [{"frame_id": e.FrameId, "inspection": e.Inspection, "verdict": e.Verdict,
                          "scores": json.loads(e.ScoresJson), "lot": e.Lot} for e in handler.events]
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await vs.call_method(f"{idx}:SetLot", "ANON-LOT", "")
        with pytest.raises(ua.UaError):  # the address space is read-only for clients
            await state.write_value(ua.Variant("Halted", ua.VariantType.String))
        user = await _connect(url, "operator1", "s3cret-pass")
        try:
            uvs = await user.nodes.objects.get_child([f"{idx}:VisionSystem"])
            out["set_lot"] = json.loads(await uvs.call_method(f"{idx}:SetLot", "LOT-42", "RCP-7"))
            lot = await vs.get_child([f"{idx}:Lot"])
            end = time.monotonic() + 10
            while await lot.read_value() != "LOT-42" and time.monotonic() < end:
                await asyncio.sleep(0.1)
            out["lot"] = await lot.read_value()
            out["pause"] = json.loads(await uvs.call_method(f"{idx}:Pause"))
            end = time.monotonic() + 10
            while await state.read_value() != "Halted" and time.monotonic() < end:
                await asyncio.sleep(0.1)
            out["state_paused"] = await state.read_value()
            await uvs.call_method(f"{idx}:Resume")
            handler.events.clear()
            end = time.monotonic() + 20
            while not any(e.Lot == "LOT-42" for e in handler.events) and time.monotonic() < end:
                await asyncio.sleep(0.1)
            out["events_after"] = [e.Lot for e in handler.events]
            counters = await vs.get_child([f"{idx}:Counters"])
            out["acquired"] = await (await counters.get_child([f"{idx}:Acquired"])).read_value()
        finally:
            await user.disconnect()
        bad = Client(url, timeout=10)
        bad.set_user("operator1")
        bad.set_password("wrong")
        with pytest.raises(ua.UaError):
            await bad.connect()
    finally:
        await anon.disconnect()
    return out


def _self_signed(tmp: Path, name: str, uri: str) -> tuple[Path, Path]:
    """A certificate + key pair like `openssl req -x509 …` in docs/line-integration.md makes."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / f"{name}-cert.der", tmp / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def _encrypted_call(url: str, cert: Path, key: Path) -> tuple[str, dict]:
    c = Client(url, timeout=10)
    c.set_user("operator1")
    c.set_password("s3cret-pass")
    await c.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
    await c.connect()
    try:
        idx = await c.get_namespace_index(NS)
        vs = await c.nodes.objects.get_child([f"{idx}:VisionSystem"])
        return c.security_policy.URI, json.loads(await vs.call_method(f"{idx}:SetLot", "LOT-SEC", ""))
    finally:
        await c.disconnect()


def test_opcua_browse_subscribe_call_and_audit(tmp_path):
    server_cert, server_key = _self_signed(tmp_path, "server", "urn:inspector:server")
    client_cert, client_key = _self_signed(tmp_path, "client", "urn:freeopcua:client")
    users = tmp_path / "opcua-users.yaml"
    users.write_text(f"operator1: '{hash_password('s3cret-pass', salt=os.urandom(16), iterations=1000)}'\n")
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    cfg_path, cfg = write_config(tmp_path, camera={"fps": 10}, workers=1, inspections=REJECTING_QUALITY,
                                 opcua={"enabled": True, "endpoint": url, "users_file": str(users),
                                        "security": ["None", "Basic256Sha256_SignAndEncrypt"],
                                        "certificate": str(server_cert), "private_key": str(server_key)})
    daemon = Daemon(cfg_path)
    try:
        wait_ready(cfg, daemon.proc)
        out = asyncio.run(_session(url))
        policy, secure = asyncio.run(_encrypted_call(url, client_cert, client_key))
    finally:
        log = daemon.stop()
    assert daemon.proc.returncode == 0, log
    assert {"SystemState", "Lot", "Recipe", "ExpectedExcipient", "LastResult", "Counters", "SetLot", "Pause",
            "Resume"} <= set(out["children"])
    assert out["state_before"] == "Operational"
    ev = out["events"]
    assert len(ev) >= 5 and {e["verdict"] for e in ev} <= {"pass", "reject"} and ev[0]["inspection"] == "quality"
    assert "focus" in ev[0]["scores"]
    assert out["set_lot"]["context"]["lot"] == "LOT-42" and out["lot"] == "LOT-42"
    assert out["pause"] == {"paused": True} and out["state_paused"] == "Halted"
    assert "LOT-42" in out["events_after"], "frames acquired after SetLot carry the new lot"
    assert out["acquired"] > 0
    control = audit_records(tmp_path / "state", "control")
    by_cmd = [(r["cmd"], r["ok"], r.get("opcua_user"), r.get("channel")) for r in control]
    assert by_cmd[:4] == [("set_lot", False, "anonymous", "opcua"), ("set_lot", True, "operator1", "opcua"),
                          ("pause", True, "operator1", "opcua"), ("resume", True, "operator1", "opcua")]
    assert control[0]["args"]["lot"] == "ANON-LOT" and "anonymous" in control[0]["error"]
    assert policy.endswith("#Basic256Sha256") and secure["context"]["lot"] == "LOT-SEC"
    assert by_cmd[4] == ("set_lot", True, "operator1", "opcua"), "the encrypted session's call is audited too"
    lots = audit_records(tmp_path / "state", "lot_change")
    assert [(r["lot"], r["by"]) for r in lots[-2:]] == [("LOT-42", "opcua:operator1"), ("LOT-SEC", "opcua:operator1")]
    assert "Traceback" not in log
