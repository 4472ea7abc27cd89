"""Multi-class defect typing and one-class (novelty) texture models: evaluation reports, training into a
repository, inline serving with the tablet_defect inspection — on small procedural sets, plus a
small subset of the real NEU and magnetic-tile sets when present."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from inspector.frame import Frame, FrameMeta
from inspector.inspections.base import InspectionContext
from inspector.inspections.tablet_defect import TabletDefect
from texture_helpers import texture_folder as _folder, texture_image as _texture


DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _frame(pixels: np.ndarray) -> Frame:
    return Frame(pixels, FrameMeta("cam0", 1, 0.0, pixels.shape[1], pixels.shape[0], "Mono8"))


def _main(*argv: str) -> int:
    from inspector.cli import main

    return main(list(argv))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("mc") / "data", per_class=10)


def test_relieff_handles_several_classes_like_skrebate() -> None:
    from skrebate import ReliefF

    from inspector.offline.texture.selection import relieff_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    y = np.repeat([0, 1, 2], 20)
    X[:, 2] += 1.5 * y
    X[:, 5] += 2.0 * (y == 1)
    ours = relieff_scores(X, y)
    assert np.allclose(ours, ReliefF(n_neighbors=10).fit(X, y).feature_importances_, atol=1e-10)
    assert set(np.argsort(-ours)[:2]) == {2, 5}


def test_evaluate_multiclass_with_repeats_writes_per_class_report(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    rc = _main("evaluate", "texture", str(data), "--task", "multiclass", "--protocol", "split", "--repeats", "3",
               "--features", "mazda,lbp", "--feature-sets", "all,rf15", "--classifiers", "svm,nb",
               "--report", str(out), "--no-progress")
    assert rc == 0
    assert "3 × split" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "multiclass" and m["repeats"] == 3 and m["families"] == ["mazda", "lbp"]
    assert m["classes"] == ["good", "spots", "streaks"]
    cell = next(r for r in m["results"] if (r["feature_set"], r["classifier"]) == ("all", "svm"))
    assert len(cell["per_repeat_accuracy"]) == 3 and np.sum(cell["confusion_total"]) == 3 * 15
    assert cell["accuracy"]["mean"] > 0.8  # streaks and spots are easy to tell from smooth noise
    assert set(cell["per_class"]["spots"]) == {"precision", "recall", "f1"}
    assert cell["micro_f1"]["mean"] == pytest.approx(cell["accuracy"]["mean"])
    report = (out / "report.md").read_text()
    assert "| **macro** |" in report and "| **micro** (= accuracy) |" in report and " ± " in report
    assert len(list(out.glob("confusion_*.png"))) == 1 and (out / "accuracy_multiclass.png").stat().st_size > 1000
    # the LBP family is cached in a file of its own next to the MaZda one
    assert (out / "features.csv").is_file() and (out / "features-lbp.csv").is_file()


def test_multiclass_refuses_the_binary_pair_search(data: Path, tmp_path: Path, capsys) -> None:
    rc = _main("evaluate", "texture", str(data), "--task", "multiclass", "--protocol", "split",
               "--feature-sets", "pair", "--classifiers", "nb", "--report", str(tmp_path / "r"), "--no-progress")
    assert rc == 2 and "binary" in capsys.readouterr().err


def test_train_multiclass_and_serve_the_defect_type(data: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    rc = _main("train", "texture", str(data), "--task", "multiclass", "--features", "mazda,lbp", "--feature-set",
               "all", "--classifier", "svmt", "--roi", "none", "--out", str(repo / "typ" / "1"), "--no-progress")
    assert rc == 0
    m = json.loads((repo / "typ" / "1" / "manifest.json").read_text())
    assert m["classes"] == ["good", "spots", "streaks"] and m["input"]["mode"] == "multiclass"
    assert m["input"]["good_class"] == "good" and m["input"]["families"] == ["mazda", "lbp"]
    assert len(m["input"]["features"]) == 281 + 54 and "C" in m["metrics"]["tuned"]
    assert "--task multiclass" in m["training"]["command"]
    insp = TabletDefect(TabletDefect.Params(model="typ"), InspectionContext(state_dir=tmp_path, models_dir=repo))
    good = insp.inspect(_frame(_texture("good", 4242)))
    streak = insp.inspect(_frame(_texture("streaks", 4243)))
    assert good.verdict == "pass" and good.detail["predicted_class"] == "good"
    assert streak.verdict == "reject" and streak.detail["defect_type"] == "streaks"
    assert streak.scores["p_streaks"] == streak.detail["defect_probability"] > 0.5
    assert streak.scores["p_defect"] == pytest.approx(1 - streak.scores["p_good"], abs=1e-5)


def test_oneclass_train_calibrate_and_serve(tmp_path: Path) -> None:
    data = _folder(tmp_path / "data", per_class=30, classes=("good",))
    repo = tmp_path / "models"
    rc = _main("train", "texture", str(data), "--task", "oneclass", "--detector", "mcd", "--frr", "0.1",
               "--features", "lbp", "--roi", "none", "--out", str(repo / "nov" / "1"), "--no-progress")
    assert rc == 0
    vdir = repo / "nov" / "1"
    m = json.loads((vdir / "manifest.json").read_text())
    assert m["input"]["mode"] == "oneclass" and m["thresholds"]["false_reject_rate"] == 0.1
    cal = np.load(vdir / "calibration.npy", allow_pickle=False)
    assert len(cal) == 10 and m["thresholds"]["novelty"] == pytest.approx(np.quantile(cal, 0.9, method="higher"))
    assert m["artifacts"]["calibration.npy"]["sha256"] == hashlib.sha256((vdir / "calibration.npy").read_bytes()).hexdigest()
    insp = TabletDefect(TabletDefect.Params(model="nov"), InspectionContext(state_dir=tmp_path, models_dir=repo))
    goods = [insp.inspect(_frame(_texture("good", 5000 + i))) for i in range(10)]
    bads = [insp.inspect(_frame(_texture("streaks", 6000 + i))) for i in range(5)]
    assert all(b.verdict == "reject" for b in bads)
    assert sum(g.verdict == "reject" for g in goods) <= 4
    assert min(b.scores["novelty"] for b in bads) > np.median([g.scores["novelty"] for g in goods])
    assert all(0.0 <= r.scores["p_defect"] <= 1.0 for r in goods + bads)
    # a tampered calibration file is refused like any other artifact
    (vdir / "calibration.npy").write_bytes(np.save.__doc__.encode()[:64])
    from inspector.errors import ModelIntegrityError

    with pytest.raises(ModelIntegrityError):
        TabletDefect(TabletDefect.Params(model="nov"), InspectionContext(state_dir=tmp_path, models_dir=repo))


def test_evaluate_oneclass_reports_auroc_per_defect_type(tmp_path: Path, capsys) -> None:
    data = _folder(tmp_path / "data", per_class=24)
    out = tmp_path / "report"
    rc = _main("evaluate", "texture", str(data), "--task", "oneclass", "--repeats", "2", "--features", "lbp",
               "--detectors", "mcd,gaussian,ocsvm,iforest", "--report", str(out), "--no-progress")
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "oneclass" and set(m["auroc"]) == {"mcd", "gaussian", "ocsvm", "iforest"}
    assert set(m["auroc"]["mcd"]) == {"spots", "streaks", "All"} and len(m["auroc"]["mcd"]["All"]) == 2
    assert np.mean(m["auroc"]["gaussian"]["streaks"]) > 0.9
    assert (out / "auroc.png").is_file() and (out / "roc_mcd.png").is_file()
    assert "| **All** |" in (out / "report.md").read_text()


@pytest.mark.skipif(not (DATASETS / "neu-cls").is_dir(), reason="NEU data set absent (../shared/datasets/neu-cls)")
def test_neu_subset_multiclass_with_lbp(tmp_path: Path) -> None:
    """12 real images per NEU class, LBP family only: the 6 defect types are told apart well above chance."""
    out = tmp_path / "neu"
    rc = _main("evaluate", "texture", str(DATASETS / "neu-cls"), "--task", "multiclass", "--protocol", "split",
               "--repeats", "2", "--features", "lbp", "--feature-sets", "all", "--classifiers", "svm",
               "--max-images-per-class", "12", "--report", str(out), "--no-progress")
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["anchor"]["accuracy"] == 0.9893 and len(m["classes"]) == 6
    assert m["results"][0]["accuracy"]["mean"] > 0.6  # chance is 1/6


@pytest.mark.skipif(not (DATASETS / "magnetic-tile").is_dir(),
                    reason="magnetic-tile data set absent (../shared/datasets/magnetic-tile)")
def test_magnetic_tile_subset_oneclass(tmp_path: Path) -> None:
    """Real tiles: 14 MT_Free images (7 fit, 4 calibrate, 3 test); each defect folder is an unknown type (masks ignored)."""
    out = tmp_path / "mt"
    rc = _main("evaluate", "texture", str(DATASETS / "magnetic-tile"), "--task", "oneclass", "--features", "lbp",
               "--detectors", "gaussian", "--max-images-per-class", "14", "--report", str(out), "--no-progress")
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["auroc"]["gaussian"]) == {"MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven", "All"}
    assert all(0.0 <= v[0] <= 1.0 for v in m["auroc"]["gaussian"].values())
