import pytest

from inspector.config import load_config
from inspector.errors import ConfigError


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_embedded_default_is_valid():
    cfg = load_config(None)
    assert cfg.camera.driver == "synthetic" and cfg.workers >= 1
    assert len(cfg.sha256()) == 64


def test_yaml_and_env_override_nested(tmp_path, monkeypatch):
    p = _write(tmp_path, "camera: {driver: synthetic, scene: noise, fps: 7}\nworkers: 3\n")
    monkeypatch.setenv("INSPECTOR_CAMERA__FPS", "12.5")
    monkeypatch.setenv("INSPECTOR_WORKERS", "4")
    cfg = load_config(p)
    assert cfg.camera.fps == 12.5 and cfg.workers == 4 and cfg.camera.scene == "noise"


def test_sha256_changes_with_the_effective_config(tmp_path, monkeypatch):
    p = _write(tmp_path, "camera: {driver: synthetic, scene: noise}\n")
    a = load_config(p).sha256()
    monkeypatch.setenv("INSPECTOR_QUEUE__CAPACITY", "5")
    assert load_config(p).sha256() != a


@pytest.mark.parametrize("text,needle", [
    ("camera: {driver: usbcam}", "camera.driver"),
    ("camera: {fps: -3}", "camera.fps"),
    ("queue: {when_full: maybe}", "queue.when_full"),
    ("camera: {colour: red}", "camera.colour: unknown key"),
    ("inspections: [{name: telepathy}]", "telepathy"),
    ("inspections: [{name: quality, params: {min_focus: -1}}]", "min_focus"),
    ("inspections: [{name: quality, params: {bogus: 1}}]", "bogus"),
    ("camera: {driver: replay}", "camera.path"),
    ("publish: {endpoint: 'http://x'}", "publish.endpoint"),
    ("[1, 2]", "mapping"),
    ("camera: {driver: [", "YAML"),
])
def test_bad_config_names_key_and_value(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    assert needle in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_env_value_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_WORKERS", "many")
    with pytest.raises(ConfigError, match="workers"):
        load_config(_write(tmp_path, "camera: {scene: noise}\n"))


def test_cli_output_piped_into_a_closed_reader_exits_quietly():
    import subprocess
    import sys

    # the reader is gone before the command writes (what `inspector … | head` does to a long output)
    p = subprocess.Popen([sys.executable, "-m", "inspector", "config", "check", "--print"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
