"""The calibrated open-set check inside excipient_identity: artifact, manifest verification, verdicts."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from inspector.errors import ModelIntegrityError
from inspector.frame import Frame, FrameMeta
from inspector.identity.openset import ARTIFACT, OpenSet
from inspector.inspections.base import InspectionContext
from inspector.inspections.excipient_identity import ExcipientIdentity
from inspector.modelrepo import load_model_dir, sha256_file
from inspector.offline.identity.data import read_frame
from openset_helpers import MODEL, REPO, calibrated_repo


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    return calibrated_repo(tmp_path_factory)


def _make(repo: Path, tmp_path: Path, **params) -> ExcipientIdentity:
    ctx = InspectionContext(state_dir=tmp_path / "state", models_dir=repo)
    params.setdefault("gradcam_every_n_passes", 0)
    return ExcipientIdentity(ExcipientIdentity.Params(providers=["CPUExecutionProvider"], **params), ctx)


def _frame(pixels: np.ndarray, **context) -> Frame:
    h, w = pixels.shape[:2]
    meta = FrameMeta(camera="sem0", frame_id=1, acquired_at=time.time(), width=w, height=h,
                     pixel_format="Mono8", run_id="run-1", context=dict(context))
    return Frame(pixels, meta)


def test_calibration_is_listed_and_verified_in_the_manifest(calibrated, tmp_path):
    repo, _ = calibrated
    md = load_model_dir(repo / MODEL / "1")
    m = md.manifest
    assert m.artifacts[ARTIFACT]["sha256"] == sha256_file(md.path / ARTIFACT)
    block = m.extra["openset"]
    assert block["method"] == "mahalanobis" and block["aggregation"] == "mean"
    assert m.thresholds["ood"] == block["threshold"] > 0
    assert block["drift"]["dims"] == 8 and block["drift"]["threshold"] > 0
    # the model's own artifacts keep their shipped hashes
    shipped = json.loads((REPO / "models" / MODEL / "1" / "manifest.json").read_text())["artifacts"]
    assert all(m.artifacts[k]["sha256"] == v["sha256"] for k, v in shipped.items())
    # a modified artifact is refused
    bad = tmp_path / "bad"
    shutil.copytree(md.path, bad)
    data = bytearray((bad / ARTIFACT).read_bytes())
    data[-100] ^= 0xFF
    (bad / ARTIFACT).write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_model_dir(bad)


def test_a_pickled_array_in_the_artifact_is_refused(calibrated, tmp_path):
    repo, _ = calibrated
    md = load_model_dir(repo / MODEL / "1")
    arrays = dict(np.load(md.path / ARTIFACT))
    arrays["means"] = np.array([{"evil": 1}], dtype=object)
    evil = tmp_path / "evil.npz"
    np.savez(evil, **arrays)
    with pytest.raises(ModelIntegrityError, match="unreadable"):
        OpenSet.load(evil, md.manifest.extra["openset"], len(md.manifest.classes))


def test_known_frames_pass_with_ood_scores_and_an_embedding(calibrated, tmp_path):
    repo, data = calibrated
    insp = _make(repo, tmp_path, min_confidence=0.0)
    classes = insp._current.classes
    passed = 0
    for cls in classes[:5]:
        pixels = read_frame(sorted((data / cls).glob("*.png"))[0])
        r = insp.inspect(_frame(pixels, expected_excipient=cls))
        assert r.scores["ood_threshold"] == pytest.approx(insp._current.openset.threshold)
        assert r.detail["openset"] == "mahalanobis/mean" and len(r.detail["embedding"]) == 8
        assert r.detail["nearest_class"] in classes
        # the morphology view: the frame measured by the serving function, as at calibration
        from inspector.identity.morphology import measure
        from inspector.identity.tiling import crop_data_bar, to_gray_u8

        assert r.detail["morphology"] == pytest.approx(measure(crop_data_bar(to_gray_u8(pixels))), abs=1e-5)
        assert "morphology" in r.stages
        if r.verdict == "pass":
            assert r.scores["ood"] <= r.scores["ood_threshold"] and r.reason is None
            passed += 1
        else:
            assert r.reason in ("wrong_material", "unknown_material")
    assert passed >= 3


def test_a_foreign_frame_is_rejected_as_unknown_material(calibrated, tmp_path):
    repo, _ = calibrated
    insp = _make(repo, tmp_path, min_confidence=0.0)
    expected = insp._current.classes[0]
    # a flat, noisy grey frame: nothing like any powder
    pixels = (np.random.default_rng(3).normal(128, 6, size=(960, 1280))).clip(0, 255).astype(np.uint8)
    r = insp.inspect(_frame(pixels, expected_excipient=expected))
    assert r.verdict == "reject" and r.reason == "unknown_material"
    assert r.scores["ood"] > r.scores["ood_threshold"]
    assert r.attachments and r.attachments[0].kind == "gradcam"  # Grad-CAM as for every reject


def test_real_maltodextrin_frames_are_mostly_unknown(calibrated, tmp_path, sem_maltodextrin_dir):
    repo, _ = calibrated
    insp = _make(repo, tmp_path, min_confidence=0.0)
    reasons = []
    for f in sorted(sem_maltodextrin_dir.glob("*.png"))[:4]:
        r = insp.inspect(_frame(read_frame(f), expected_excipient=insp._current.classes[0]))
        reasons.append(r.reason)
    assert reasons.count("unknown_material") >= 3, reasons


def test_a_known_class_other_than_expected_is_wrong_material(calibrated, tmp_path):
    repo, data = calibrated
    insp = _make(repo, tmp_path, min_confidence=0.0)
    classes = insp._current.classes
    seen = []
    for cls in classes[::2]:
        pixels = read_frame(sorted((data / cls).glob("*.png"))[0])
        other = classes[(classes.index(cls) + 1) % len(classes)]
        r = insp.inspect(_frame(pixels, expected_excipient=other))
        seen.append(r.reason)
        if r.scores["ood"] <= r.scores["ood_threshold"] and r.detail["identity"] != other:
            assert r.verdict == "reject" and r.reason == "wrong_material"
    assert seen.count("wrong_material") >= 3, seen


def test_an_uncalibrated_model_keeps_todays_behaviour_and_says_so(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(REPO / "models" / MODEL / "1", repo / MODEL / "1")
    insp = _make(repo, tmp_path, min_confidence=0.0)
    pixels = (np.random.default_rng(3).normal(128, 6, size=(960, 1280))).clip(0, 255).astype(np.uint8)
    r = insp.inspect(_frame(pixels, expected_excipient=insp._current.classes[0]))
    assert "ood" not in r.scores and "embedding" not in r.detail
    assert r.detail["openset"].startswith("off: model not calibrated")
    assert r.reason != "unknown_material"
