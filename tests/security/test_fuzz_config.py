"""Fuzzing the configuration loader: any YAML file either loads or raises ConfigError (never a traceback)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inspector.audit.settings import audit_config
from inspector.config import load_config
from inspector.control.settings import control_config
from inspector.errors import ConfigError
from inspector.transport.security import security_config

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.sampled_from(["tcp://127.0.0.1:5", "ipc:///tmp/x", "synthetic", "replay",
                                                   "genicam", "Mono8", "block", "1:2", "-1", "1e999"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=12)

TOP = ["camera", "workers", "queue", "publish", "metrics", "inspections", "lot", "log", "transport", "supervisor",
       "state_dir", "runtime_dir", "models_dir", "audit", "control", "security"]
SUB = {
    "camera": ["driver", "id", "cti", "device", "width", "height", "pixel_format", "fps", "fetch_timeout_s",
               "reconnect_backoff_s", "path", "loop", "scene", "classes", "seed", "lot"],
    "queue": ["capacity", "when_full"], "publish": ["endpoint", "gradcam_dir"], "metrics": ["listen", "enabled"],
    "lot": ["id", "recipe", "expected_excipient"], "log": ["level", "results", "json_lines"],
    "transport": ["frames_endpoint", "max_message_bytes"],
    "supervisor": ["drain_timeout_s", "restart_backoff_s"],
    "audit": ["db", "hmac_key_file", "gradcam_dir", "retention"],
    "control": ["endpoint", "timeout_s"],
    "security": ["curve_server_secret_key_file", "curve_server_public_key_file", "curve_allowed_clients_dir",
                 "curve_client_secret_key_file"],
}


@st.composite
def config_mappings(draw) -> dict:
    out: dict = {}
    for key in draw(st.lists(st.sampled_from(TOP) | st.text(max_size=8), max_size=6, unique=True)):
        if key in SUB and draw(st.booleans()):
            out[key] = draw(st.dictionaries(st.sampled_from(SUB[key]) | st.text(max_size=5), values, max_size=4))
        elif key == "inspections" and draw(st.booleans()):
            out[key] = draw(st.lists(st.fixed_dictionaries(
                {"name": st.sampled_from(["quality", "tablet_defect", "nope", ""]) | scalars},
                optional={"enabled": scalars, "params": st.dictionaries(st.text(max_size=12), values, max_size=3)}),
                max_size=3))
        else:
            out[key] = draw(values)
    return out


@pytest.fixture(autouse=True)
def _no_inspector_env(monkeypatch) -> None:
    for k in list(os.environ):
        if k.startswith("INSPECTOR_"):
            monkeypatch.delenv(k)


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            cfg = load_config(p)
        except ConfigError as e:
            assert str(e)
            return
        # blocks validated by their own modules follow the same rule
        for check in (audit_config, control_config, security_config):
            try:
                check(cfg)
            except ConfigError:
                pass


@FUZZ
@given(config_mappings())
@example({"camera": {"reconnect_backoff_s": [1]}})
@example({"camera": {"reconnect_backoff_s": "ab"}})
@example({"workers": float("nan")})
@example({"audit": {"retention": [1, 2]}})
@example({"security": None})
def test_load_config_on_arbitrary_mappings(mapping: dict) -> None:
    try:
        text = yaml.safe_dump(mapping, allow_unicode=True)
    except yaml.YAMLError:
        return
    _load(text)


@FUZZ
@given(st.text(max_size=300))
@example("camera: [")
@example("- 1\n- 2")
@example("a: &x [*x]")
@example("!!python/object/apply:os.system ['echo pwned']")
@example("camera: {driver: replay}")
def test_load_config_on_arbitrary_text(text: str) -> None:
    _load(text)
