import cv2
import numpy as np
import pytest

from inspector.acquisition import make_camera, open_camera
from inspector.acquisition.genicam import GenICamCamera, default_cti
from inspector.acquisition.pixfmt import convert
from inspector.acquisition.replay import ReplayCamera
from inspector.config import CameraConfig
from inspector.errors import BadFrameError, CameraError, ConfigError


def test_genicam_simulated_producer_streams_configured_frames():
    cam = GenICamCamera("viky0", cti=None, width=320, height=240, pixel_format="Mono8", fps=100)
    with cam:
        frames = list(cam.frames(timeout=2.0, limit=5))
    assert [f.meta.frame_id for f in frames] == [0, 1, 2, 3, 4]
    for f in frames:
        assert f.pixels.shape == (240, 320) and f.pixels.dtype == np.uint8
        assert f.meta.pixel_format == "Mono8" and f.meta.camera == "viky0"
        assert f.pixels.flags.owndata or f.pixels.base is not None  # our own copy, not the GenTL buffer
    assert frames[0].meta.acquired_at <= frames[-1].meta.acquired_at
    # copied out of the buffer: the frames are independent arrays
    assert not np.shares_memory(frames[0].pixels, frames[1].pixels)


def test_genicam_rgba_converted_to_rgb():
    cam = GenICamCamera("viky0", cti=None, width=200, height=100, pixel_format="RGBa8", fps=100)
    with cam:
        f = next(cam.frames(timeout=2.0, limit=1))
    assert f.pixels.shape == (100, 200, 3) and f.meta.pixel_format == "RGB8"


def test_genicam_refused_setting_and_missing_cti_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        GenICamCamera("x", cti=str(tmp_path / "missing.cti"))
    cam = GenICamCamera("x", cti=None, width=5000, height=240)  # viky accepts 100..800
    with pytest.raises(CameraError, match="Width"):
        cam.open()
    cam.close()
    with pytest.raises(CameraError, match="out of range"):
        GenICamCamera("x", cti=None, device=9).open()
    assert default_cti().name == "viky.cti"


def test_pixel_format_conversion():
    data = np.arange(12, dtype=np.uint8)
    px, pf = convert(data, 2, 2, "BGR8")
    assert pf == "RGB8" and px[0, 0].tolist() == [2, 1, 0]
    px, pf = convert(np.arange(8, dtype=np.uint8), 2, 2, "Mono16")
    assert pf == "Mono16" and px.dtype == np.uint16 and px[0, 0] == 256
    with pytest.raises(BadFrameError, match="unsupported pixel format"):
        convert(data, 2, 2, "YUV422_8")
    with pytest.raises(BadFrameError, match="short|needs"):
        convert(np.zeros(3, np.uint8), 2, 2, "Mono8")


def _write_images(folder):
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((30, 40), 10, np.uint8))
    cv2.imwrite(str(folder / "b.tif"), np.full((30, 40), 4000, np.uint16))
    cv2.imwrite(str(folder / "c.png"), np.dstack([np.full((30, 40), v, np.uint8) for v in (1, 2, 3)]))
    (folder / "d.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("ignored")


def test_replay_reads_8_16_bit_and_colour_skips_bad_files_and_loops(tmp_path):
    _write_images(tmp_path / "lot")
    bad = []
    cam = ReplayCamera("r0", path=str(tmp_path / "lot"), fps=1000, on_bad_input=lambda k, m: bad.append(k))
    with cam:
        frames = list(cam.frames(timeout=1.0, limit=7))
    assert [f.meta.source for f in frames] == ["a.png", "b.tif", "c.png"] * 2 + ["a.png"]
    assert frames[1].pixels.dtype == np.uint16 and frames[1].meta.pixel_format == "Mono16"
    assert frames[2].meta.pixel_format == "RGB8" and frames[2].pixels[0, 0].tolist() == [3, 2, 1]
    assert bad == ["unreadable_file", "unreadable_file"]  # d.jpg once per pass, counted, not fatal


def test_replay_glob_and_errors(tmp_path):
    _write_images(tmp_path / "lot")
    cam = ReplayCamera("r0", path=str(tmp_path / "lot" / "*.png"), fps=1000, loop=False)
    with cam:
        assert [f.meta.source for f in cam.frames(limit=2)] == ["a.png", "c.png"]
        with pytest.raises(CameraError, match="finished"):
            cam.read(1.0)
    with pytest.raises(ConfigError, match="not found"):
        make_camera(CameraConfig(driver="replay", path=str(tmp_path / "nope")), "r")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.png").write_bytes(b"garbage")
    cam = open_camera(CameraConfig(driver="replay", path=str(tmp_path / "junk"), fps=1000), "r")
    with pytest.raises(CameraError, match="no readable image"):
        for _ in range(3):
            cam.read(1.0)


def test_synthetic_noise_camera_is_deterministic():
    cfg = CameraConfig(driver="synthetic", scene="noise", width=64, height=48, fps=1000)
    a = [f.pixels for f in open_camera(cfg, "s").frames(limit=2)]
    b = [f.pixels for f in open_camera(cfg, "s").frames(limit=2)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[0], a[1])


def test_genicam_read_is_bounded_by_its_timeout_in_total():
    """harvesters' fetch(timeout) bounds each attempt, not the call; our read bounds the call."""
    import time

    from inspector.acquisition.genicam import GenICamCamera

    cam = GenICamCamera("viky0", cti=None, width=160, height=120, pixel_format="Mono8", fps=1)
    cam.open()
    try:
        cam.read(3.0)  # one frame: the next one is ~1 s away
        t0 = time.monotonic()
        assert cam.read(0.2) is None
        assert time.monotonic() - t0 < 0.6
        assert cam._incomplete.count == 0  # the INCOMPLETE_BUFFER callback is registered and counts
    finally:
        cam.close()
