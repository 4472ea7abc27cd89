"""The patch-novelty tablet model: features, training on good tablets only, evaluation by severity, the
shipped default model (models/tablet-defect-default, latest version) served by tablet_defect."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.errors import BadFrameError
from inspector.frame import Frame, FrameMeta
from inspector.inspections.base import InspectionContext
from inspector.inspections.tablet_defect import TabletDefect
from inspector.synth.tablets import render_tablet
from inspector.texture.patches import PATCH_FEATURES, patch_grid

REPO = Path(__file__).resolve().parents[2]


def _frame(img: np.ndarray, i: int = 1) -> Frame:
    return Frame(img, FrameMeta("cam0", i, 0.0, img.shape[1], img.shape[0], "Mono8"))


def test_patch_features_see_a_chip_in_one_patch() -> None:
    good, _ = render_tablet("good", 11, width=640, height=480)
    chip, p = render_tablet("chip", 11, severity=3, width=640, height=480)
    g, c = patch_grid(good), patch_grid(chip)
    assert g.X.shape[1] == len(PATCH_FEATURES) and len(g.X) > 30
    vd = PATCH_FEATURES.index("very_dark")
    assert c.X[:, vd].max() > 0.2 > g.X[:, vd].max()  # the bitten-out rim is dark inside the convex hull
    assert abs(g.radius - p["radius_px"]) / p["radius_px"] < 0.1
    with pytest.raises(BadFrameError):
        patch_grid(np.full((200, 300), 40, np.uint8))


def test_default_model_is_the_patch_model_and_finds_local_defects(tmp_path: Path) -> None:
    insp = TabletDefect(TabletDefect.Params(), InspectionContext(state_dir=tmp_path, models_dir=REPO / "models"))
    m = json.loads((REPO / "models" / "tablet-defect-default" / insp.model_info().version / "manifest.json").read_text())
    assert m["input"]["mode"] == "patches" and set(m["artifacts"]) == {"pipeline.skops", "frame.skops", "calibration.npy"}
    assert {"novelty", "tau_patch", "tau_frame", "false_reject_rate"} <= set(m["thresholds"])
    verdicts = {}
    for cls in ("good", "chip", "crack"):
        img, _ = render_tablet(cls, 777, severity=None if cls == "good" else 2)
        verdicts[cls] = insp.inspect(_frame(img))
    assert verdicts["good"].verdict == "pass" and not verdicts["good"].attachments
    for cls in ("chip", "crack"):
        r = verdicts[cls]
        assert r.verdict == "reject" and r.detail["decided_by"] == "patch", cls
        wp = r.detail["worst_patch"]
        assert wp["score"] >= 1.0 and wp["w"] == wp["h"] > 0
        snap = r.attachments[0]
        assert snap.kind == "snapshot" and snap.header["worst_patch"] == wp
        png = cv2.imdecode(np.frombuffer(snap.payload, np.uint8), cv2.IMREAD_COLOR)
        assert png is not None and png.shape[2] == 3
    assert verdicts["chip"].scores["p_defect"] > verdicts["good"].scores["p_defect"]
    # a frame without a tablet is an error verdict, never an exception
    assert insp.inspect(_frame(np.zeros((300, 400), np.uint8))).verdict == "error"


def test_train_and_evaluate_patch_model_cli(tmp_path: Path, capsys) -> None:
    from inspector.cli import main

    data = tmp_path / "data"
    rows = ["file,class,severity"]
    for cls, n in (("good", 15), ("chip", 3), ("moisture", 3)):
        (data / cls).mkdir(parents=True)
        for i in range(n):
            img, p = render_tablet(cls, 300 + i, severity=None if cls == "good" else 3, width=512, height=384)
            cv2.imwrite(str(data / cls / f"{i}.png"), img)
            rows.append(f"{cls}/{i}.png,{cls},{p['severity']}")
    (data / "params.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "models" / "pm" / "1"
    assert main(["train", "texture", str(data), "--task", "patches", "--detector", "gaussian", "--frr", "0.1",
                 "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["training"]["counts"]["fit"] == 10 and m["training"]["counts"]["calibration"] == 5
    assert m["training"]["command"].startswith("inspector train texture ") and "--task patches" in m["training"]["command"]
    rep = tmp_path / "rep"
    assert main(["evaluate", "texture", str(data), "--task", "patches", "--model", str(out), "--report", str(rep),
                 "--no-progress"]) == 0
    res = json.loads((rep / "metrics.json").read_text())
    assert res["n_good"] == 15 and res["n_defects"] == 6 and res["per_class"]["chip"]["by_severity"]["3"]["n"] == 3
    assert res["per_class"]["chip"]["detected"] == 1.0  # a severity-3 chip is unmistakable
    assert "| chip |" in (rep / "report.md").read_text()
