"""The lot-drift listener on embeddings (no daemon): alarms, false alarms, bounded metrics, lot_summary."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.config import load_config
from inspector.daemon.drift import LotDrift, Reference
from inspector.daemon.recorder import Recorder
from inspector.ops.metrics import Metrics
from openset_helpers import MODEL, calibrated_repo


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    return calibrated_repo(tmp_path_factory)


@pytest.fixture()
def listener(calibrated, tmp_path):
    repo, _ = calibrated
    cfg = load_config(None, overrides={"state_dir": str(tmp_path / "state"), "models_dir": str(repo)},
                      check_inspections=False)
    metrics = Metrics()
    rec = Recorder(cfg, "run-1", "0" * 64, metrics)
    yield LotDrift(repo, rec, metrics), rec, metrics
    rec.close()


def _header(lot: str, fid: int, z: np.ndarray | list, excipient: str, verdict: str = "pass") -> dict:
    return {"inspection": "excipient_identity", "frame_id": fid, "verdict": verdict,
            "reason": None if verdict == "pass" else "wrong_material",
            "context": {"lot": lot, "expected_excipient": excipient},
            "model": {"name": MODEL, "version": "1", "sha256": None},
            "detail": {"expected": excipient, "embedding": [float(v) for v in z]}}


def _sample(ref: Reference, ci: int, n: int, rng, shift: float = 0.0) -> np.ndarray:
    cov = np.linalg.inv(ref.precision)
    z = rng.multivariate_normal(ref.means[ci], cov, size=n)
    if shift:  # along the direction of largest within-class spread, in within-class standard deviations
        w, v = np.linalg.eigh(cov)
        z += shift * np.sqrt(w[-1]) * v[:, -1]
    return z


def test_same_distribution_lots_rarely_alarm_and_shifted_lots_do(listener, calibrated):
    drift, rec, metrics = listener
    repo, _ = calibrated
    ref = Reference.load(repo, MODEL, "1")
    ci = 3
    exc = ref.classes[ci]
    rng = np.random.default_rng(11)
    fid = 0
    for i in range(30):
        for z in _sample(ref, ci, 10, rng):
            drift([_header(f"S{i}", fid, z, exc)], [])
            fid += 1
    # a mean shift whose expected statistic is twice the threshold (the reference is small: 4 frames per class)
    shift = float(np.sqrt(2 * ref.threshold * (1 / 10 + 1 / ref.counts[ci])))
    for i in range(5):
        for z in _sample(ref, ci, 10, rng, shift=shift):
            drift([_header(f"D{i}", fid, z, exc)], [])
            fid += 1
    drift.close("test")
    assert rec.flush()
    summaries = [r.payload for r in rec.store.records(kind="lot_summary")]
    assert len(summaries) == 35 and all(s["frames"] == s["frames_embedded"] == 10 for s in summaries)
    false_alarms = sum(s["alarm"] for s in summaries if s["lot"].startswith("S"))
    detected = sum(s["alarm"] for s in summaries if s["lot"].startswith("D"))
    assert false_alarms <= 2, [s["drift"] for s in summaries if s["lot"].startswith("S")]
    assert detected == 5, [s["drift"] for s in summaries if s["lot"].startswith("D")]
    assert all(s["threshold"] == pytest.approx(ref.threshold) and s["excipient"] == exc for s in summaries)


def test_metrics_keep_only_current_and_previous_lot_and_bad_embeddings_are_counted(listener, calibrated):
    drift, rec, metrics = listener
    repo, _ = calibrated
    ref = Reference.load(repo, MODEL, "1")
    exc = ref.classes[0]
    rng = np.random.default_rng(2)
    for i, lot in enumerate(("L1", "L2", "L3")):
        for j, z in enumerate(_sample(ref, 0, 4, rng)):
            drift([_header(lot, 10 * i + j, z, exc, "reject" if j == 0 else "pass")], [])
    drift([_header("L3", 99, [1.0, 2.0], exc)], [])  # wrong length: counted as a frame, not embedded
    lots = {s.labels["lot"] for s in metrics.lot_frames.collect()[0].samples}
    assert lots == {"L2", "L3"}
    frames = {s.labels["lot"]: s.value for s in metrics.lot_frames.collect()[0].samples}
    assert frames == {"L2": 4, "L3": 5}
    assert metrics.bad_input.labels(kind="drift_embedding")._value.get() == 1
    assert drift.stats[exc].embedded == 4
    assert rec.flush()
    summaries = [r.payload for r in rec.store.records(kind="lot_summary")]
    assert [s["lot"] for s in summaries] == ["L1", "L2"]
    assert summaries[0]["verdicts"] == {"reject": 1, "pass": 3} and summaries[0]["reasons"] == {"wrong_material": 1}
    assert summaries[0]["first_frame_id"] == 0 and summaries[0]["last_frame_id"] == 3
    assert summaries[0]["min_frames"] == 8 and summaries[0]["alarm"] is False  # 4 frames: too few to alarm


def test_frames_without_lot_or_calibration_are_not_tracked(listener, tmp_path):
    drift, rec, metrics = listener
    h = _header("", 1, [0.0] * 8, "mannit_q")
    assert drift.observe(h) is None
    h = _header("L9", 2, [0.0] * 8, "mannit_q")
    h["model"] = {"name": "no-such-model", "version": "1"}
    st = drift.observe(h)
    assert st is not None and st.frames == 1 and st.embedded == 0 and st.drift is None


def test_drift_report_reads_the_lot_from_the_audit(calibrated, tmp_path):
    """Frame records written by the real Recorder carry the embedding; the report plots and tabulates them."""
    import yaml

    from inspector.frame import FrameMeta
    from inspector.offline.identity.openset_drift import write_drift_report
    from inspector.transport.messages import Decision

    repo, _ = calibrated
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "models_dir": str(repo)}))
    cfg = load_config(cfg_file, check_inspections=False)
    metrics = Metrics()
    rec = Recorder(cfg, "run-1", "0" * 64, metrics)
    ref = Reference.load(repo, MODEL, "1")
    exc = ref.classes[2]
    drift = LotDrift(repo, rec, metrics)
    for i, z in enumerate(_sample(ref, 2, 9, np.random.default_rng(5), shift=0.0)):
        lot = "L-7" if i < 8 else "L-8"
        meta = FrameMeta(camera="sem0", frame_id=i, acquired_at=1.0e9 + i, width=1280, height=960,
                         pixel_format="Mono8", run_id="run-1", context={"lot": lot, "expected_excipient": exc})
        d = Decision(inspection="excipient_identity", verdict="pass", scores={"ood": 1.0},
                     detail={"expected": exc, "embedding": [round(float(v), 4) for v in z],
                             "morphology": [float(v) for v in ref.morphology.means[2]]},
                     model={"name": MODEL, "version": "1", "sha256": "x" * 64})
        rec.inspected(meta, [d])
        drift([_header(lot, i, z, exc)], [])
    assert rec.flush()
    rec.close()
    files = write_drift_report("L-7", cfg_file, tmp_path / "out")
    text = files["report"].read_text()
    assert files["plot"].stat().st_size > 10_000 and files["plot"].read_bytes()[:4] == b"\x89PNG"
    row = next(line for line in text.splitlines() if line.startswith(f"| {exc} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{MODEL}/1" and cells[2] == "8" and float(cells[4]) == pytest.approx(ref.threshold, rel=1e-2)
    assert "closed by lot_change" in text  # the lot_summary record written at the change to L-8
    mrow = next(line for line in text.splitlines() if line.startswith(f"| {exc} | morphology |"))
    mcells = [c.strip() for c in mrow.strip("|").split("|")]
    assert mcells[2] == "8" and float(mcells[3]) == pytest.approx(0.0, abs=1e-3) and mcells[5] == "no"
    assert "log_eqd +0.00" in mcells[6]  # the lot sits on the reference mean
    with pytest.raises(Exception, match="no identity frame"):
        write_drift_report("L-unknown", cfg_file, tmp_path / "out")


def test_morphology_view_alarms_on_its_own_and_is_exported(listener, calibrated):
    """Embeddings of the reference, particle morphology shifted: the lot alarms by the morphology view."""
    drift, rec, metrics = listener
    repo, _ = calibrated
    ref = Reference.load(repo, MODEL, "1")
    assert ref is not None and ref.morphology is not None and set(ref.views) == {"embedding", "morphology"}
    mv = ref.morphology
    ci = 5
    exc = ref.classes[ci]
    rng = np.random.default_rng(3)
    mcov = np.linalg.inv(mv.precision[ci])
    n = 12
    shift = np.sqrt(3 * mv.threshold * (1 / n + 1 / mv.counts[ci]))  # expected statistic: three times the threshold
    w, v = np.linalg.eigh(mcov)
    for lot, s in (("M-same", 0.0), ("M-shift", shift)):
        for j, (z, m) in enumerate(zip(_sample(ref, ci, n, rng),
                                       rng.multivariate_normal(mv.means[ci], mcov, size=n) + s * np.sqrt(w[-1]) * v[:, -1])):
            h = _header(lot, j, z, exc)
            h["detail"]["morphology"] = [float(x) for x in m]
            drift([h], [])
    drift([_header("M-bad", 0, _sample(ref, ci, 1, rng)[0], exc)], [])
    samples = {(s.labels["lot"], s.labels["view"]): s.value for s in metrics.lot_drift.collect()[0].samples}
    assert samples[("M-shift", "morphology")] > mv.threshold
    assert np.isnan(samples[("M-bad", "morphology")])  # no morphology in that frame: the view has no value yet
    h = _header("M-bad", 1, _sample(ref, ci, 1, rng)[0], exc)
    h["detail"]["morphology"] = [1.0, "x"]
    drift([h], [])
    assert metrics.bad_input.labels(kind="drift_morphology")._value.get() == 1
    drift.close("test")
    assert rec.flush()
    s = {r.payload["lot"]: r.payload for r in rec.store.records(kind="lot_summary")}
    assert s["M-shift"]["alarm"] and s["M-shift"]["alarm_views"] == ["morphology"]
    assert s["M-shift"]["views"]["morphology"]["frames"] == n
    assert s["M-shift"]["views"]["morphology"]["threshold"] == pytest.approx(mv.threshold)
    assert not s["M-same"]["alarm"], s["M-same"]["views"]
