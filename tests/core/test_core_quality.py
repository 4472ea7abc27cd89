import cv2
import numpy as np

from inspector.frame import Frame, FrameMeta
from inspector.inspections.base import InspectionContext
from inspector.inspections.quality import QualityGate, QualityParams


def _frame(px):
    return Frame(px, FrameMeta("c", 0, 1.0, px.shape[1], px.shape[0], "Mono16" if px.dtype == np.uint16 else "Mono8"))


def _gate(tmp_path, **kw):
    return QualityGate(QualityParams(**kw), InspectionContext(tmp_path, tmp_path))


def _textured(seed=0, shape=(480, 640)):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(120, 35, shape), 0, 255).astype(np.uint8)


def test_sharp_well_exposed_frame_passes(tmp_path):
    r = _gate(tmp_path).inspect(_frame(_textured()))
    assert r.verdict == "pass" and r.scores["focus"] > 100


def test_blur_is_rejected_as_out_of_focus(tmp_path):
    sharp = _textured()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    g = _gate(tmp_path)
    rs, rb = g.inspect(_frame(sharp)), g.inspect(_frame(blurred))
    assert rb.scores["focus"] < rs.scores["focus"] / 10
    assert rb.verdict == "reject" and "out_of_focus" in rb.detail["reasons"]


def test_exposure_problems(tmp_path):
    g = _gate(tmp_path)
    dark = (_textured() // 40).astype(np.uint8)
    over = np.clip(_textured().astype(int) + 140, 0, 255).astype(np.uint8)
    assert "under_exposed" in g.inspect(_frame(dark)).detail["reasons"]
    assert "over_exposed" in g.inspect(_frame(over)).detail["reasons"]


def test_sixteen_bit_frames_use_their_full_scale(tmp_path):
    px8 = _textured()
    r8 = _gate(tmp_path).inspect(_frame(px8))
    r16 = _gate(tmp_path).inspect(_frame(px8.astype(np.uint16) * 257))
    assert r16.verdict == r8.verdict == "pass"
    assert abs(r16.scores["focus"] - r8.scores["focus"]) / r8.scores["focus"] < 0.01
