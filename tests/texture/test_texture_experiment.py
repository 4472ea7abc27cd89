"""The offline texture experiment end to end: image folders → features (cached) → protocols →
metrics.json / report.md / PNG charts; dataset rules and bad inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.offline.texture.dataset import DatasetError, extract_table, scan_image_folder
from inspector.offline.texture.experiment import run_experiment
from texture_helpers import texture_folder as make_folder, texture_image as _texture


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run the ``inspector`` console script in-process (the same ``main`` the entry point calls)."""
    from inspector.cli import main

    def run(*args: str) -> Run:
        rc = main(list(args))
        cap = capsys.readouterr()
        return Run(rc, cap.out, cap.err)

    return run


def test_evaluate_cli_end_to_end_writes_the_report(tmp_path: Path, cli) -> None:
    data = make_folder(tmp_path / "data", per_class=5)
    cv2.imwrite(str(data / "spots" / "flat.png"), np.full((72, 72), 90, np.uint8))  # indescribable: skipped
    out = tmp_path / "report"
    r = cli("evaluate", "texture", str(data), "--protocol", "split", "--report", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["negative"] == "good" and metrics["positives"] == ["spots", "streaks"]
    assert [s["path"] for s in metrics["skipped"]] == [str(Path("spots") / "flat.png")]
    rows = metrics["results"]
    assert {r["subset"] for r in rows} == {"spots", "streaks", "All"}
    assert {r["feature_set"] for r in rows} == {"all", "cs15", "gr15", "rf15", "pair"}
    assert {r["classifier"] for r in rows} == {"svm", "knn", "nb", "ann"}
    for row in rows:  # 50/50 split of 5 + 5 (or 5 + 10): the test half is scored once
        assert row["n"] == (8 if row["subset"] == "All" else 5)
        assert row["accuracy"] == pytest.approx((row["tp"] + row["tn"]) / row["n"])
    # textures this different are separable with all 281 features
    assert max(r["accuracy"] for r in rows if r["feature_set"] == "all") == 1.0
    assert len(metrics["selected_on_all"]["cs15"]) == 15 and len(metrics["selected_on_all"]["pair"]) == 2

    report = (out / "report.md").read_text()
    assert report.count("| SVM Acc | SVM Sn | SVM Sp |") == 5  # one paper-shaped table per feature set
    assert "| **All** |" in report and "## Skipped images" in report and "flat.png" in report
    for fs in ("all", "cs15", "gr15", "rf15", "pair", "overview"):
        png = out / f"accuracy_{fs}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert cv2.imread(str(png)).shape[1] > 500
    assert (out / "results.csv").read_text().count("\n") == 1 + len(rows)

    # a rerun reads every image from the feature cache and reproduces the numbers
    r2 = cli("evaluate", "texture", str(data), "--protocol", "split", "--report", str(out), "--no-progress",
              "--classifiers", "nb", "--feature-sets", "all")
    assert r2.returncode == 0, r2.stderr
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["extraction"]["cached"] == 16
    old = {(r["subset"], r["accuracy"]) for r in rows if (r["feature_set"], r["classifier"]) == ("all", "nb")}
    assert {(r["subset"], r["accuracy"]) for r in m2["results"]} == old


def test_loo_protocol_counts_every_sample_once(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", per_class=5, classes=("good", "streaks"))
    folder = scan_image_folder(data)
    table = extract_table(folder, progress=False)
    res = run_experiment(table, negative="good", positives=["streaks"], protocol="loo",
                         feature_sets=["all", "pair"], classifiers=["svm", "nb"], progress=False)
    assert res.n_folds == {"streaks": 10}
    for c in res.cells:
        assert (c.tp + c.fn, c.tn + c.fp) == (5, 5)
    assert res.cell("streaks", "all", "svm").accuracy == 1.0
    # every LOO fold picked a pair: 10 folds × 2 features
    assert sum(res.selection_counts["streaks"]["pair"].values()) == 20


def test_empty_class_folder_is_a_clear_error(tmp_path: Path, cli) -> None:
    data = make_folder(tmp_path / "data", per_class=3, classes=("good", "spots"))
    (data / "streaks").mkdir()
    r = cli("evaluate", "texture", str(data), "--report", str(tmp_path / "r"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: class folder")
    assert "streaks contains no images" in r.stderr and "Traceback" not in r.stderr


def test_too_few_images_and_bad_options_are_clear_errors(tmp_path: Path, cli) -> None:
    data = make_folder(tmp_path / "data", per_class=2, classes=("good", "spots"))
    r = cli("evaluate", "texture", str(data), "--report", str(tmp_path / "r"), "--no-progress")
    assert r.returncode == 1 and "needs at least 3 of each" in r.stderr
    r = cli("evaluate", "texture", str(data), "--report", str(tmp_path / "r"), "--classifiers", "svm,rf")
    assert r.returncode == 2 and "unknown classifier(s) rf" in r.stderr


def test_dataset_rules_masks_negative_class_and_sampling(tmp_path: Path) -> None:
    root = tmp_path / "tiles"
    for cls in ("MT_Free", "MT_Crack"):
        d = root / cls / "Imgs"
        d.mkdir(parents=True)
        for i in range(4):
            img = _texture("good", i)
            cv2.imwrite(str(d / f"exp_{i}.jpg"), img)
            cv2.imwrite(str(d / f"exp_{i}.png"), (img > 200).astype(np.uint8))  # the defect mask beside it
    (root / "MT_Crack" / "masks").mkdir()
    cv2.imwrite(str(root / "MT_Crack" / "masks" / "m.png"), np.zeros((8, 8), np.uint8))
    f = scan_image_folder(root)
    assert f.negative == "MT_Free" and f.positives == ["MT_Crack"]
    assert all(p.suffix == ".jpg" for ps in f.classes.values() for p in ps) and f.n_images == 8
    small = scan_image_folder(root, max_per_class=2, seed=1)
    assert all(len(v) == 2 for v in small.classes.values())
    assert small.classes == scan_image_folder(root, max_per_class=2, seed=1).classes  # seeded
    (root / "good").mkdir()
    cv2.imwrite(str(root / "good" / "a.png"), _texture("good", 9))
    with pytest.raises(DatasetError, match="--negative"):
        scan_image_folder(root)
    assert scan_image_folder(root, negative="good", positives=["MT_Crack"]).classes.keys() == {"good", "MT_Crack"}


def test_magnetic_tile_quick_mode(magnetic_tile_dir: Path, tmp_path: Path, cli) -> None:
    """The real magnetic-tile set (MT_Free vs five defect folders), 8 images per class."""
    out = tmp_path / "mt"
    r = cli("evaluate", "texture", str(magnetic_tile_dir), "--protocol", "split", "--report", str(out),
             "--max-images-per-class", "8", "--no-progress", "--classifiers", "svm,nb", "--feature-sets",
             "all,cs15,pair")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["negative"] == "MT_Free" and len(m["positives"]) == 5
    assert sum(m["class_counts"].values()) + len(m["skipped"]) == 48
    assert {r["subset"] for r in m["results"]} == {*m["positives"], "All"}
    assert (out / "report.md").is_file() and (out / "accuracy_overview.png").is_file()
