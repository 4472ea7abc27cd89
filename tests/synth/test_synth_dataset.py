"""Dataset folders, contact sheets and the ``inspector synth`` CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from inspector.synth.dataset import image_seed, read_params, write_sem_dataset, write_tablet_dataset
from inspector.synth.errors import SynthError
from inspector.synth.sem import SEM_CLASSES, render_sem
from inspector.synth.sheet import contact_sheet
from inspector.synth.tablets import TABLET_CLASSES


def test_sem_dataset_layout_balance_params_and_independence(tmp_path):
    out = write_sem_dataset(tmp_path / "a", per_class=2, seed=9, classes=["Mannit Q", "pharmatose_200m"],
                            data_bar=True, progress=False)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["mannit_q/0000.png", "mannit_q/0001.png", "pharmatose_200m/0000.png", "pharmatose_200m/0001.png"]
    with open(out / "params.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == files
    assert {r["slug"] for r in rows} == {"mannit_q", "pharmatose_200m"}
    meta = read_params(out)
    assert meta["kind"] == "sem" and meta["per_class"] == 2 and len(meta["images"]) == 4
    assert all(len(im["areas_px"]) == im["n_particles"] for im in meta["images"])
    img = cv2.imread(str(out / "mannit_q/0001.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (1024, 1280) and img.dtype == np.uint8
    # each image's seed comes from (seed, class index, image index, lot): reproducible on its own…
    ci = SEM_CLASSES.index("Mannit Q")
    direct, _ = render_sem("Mannit Q", image_seed(9, ci, 1, 0), data_bar=True)
    assert np.array_equal(img, direct)
    assert int(rows[1]["seed"]) == image_seed(9, ci, 1, 0)
    # …and independent of per_class and of which other classes are written
    out2 = write_sem_dataset(tmp_path / "b", per_class=1, seed=9, classes=["pharmatose_200m"], data_bar=True,
                             progress=False)
    assert (out2 / "pharmatose_200m/0000.png").read_bytes() == (out / "pharmatose_200m/0000.png").read_bytes()


def test_tablet_dataset_has_every_class_once_per_index(tmp_path):
    out = write_tablet_dataset(tmp_path / "t", per_class=1, seed=2, progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(TABLET_CLASSES)
    assert all(len(list((out / c).glob("*.png"))) == 1 for c in TABLET_CLASSES)
    data = json.loads((out / "params.json").read_text())
    sev = {im["class"]: im["severity"] for im in data["images"]}
    assert sev["good"] == 0 and all(sev[c] in (1, 2, 3) for c in TABLET_CLASSES[1:])


def test_dataset_refuses_non_empty_folder_and_bad_arguments(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        write_tablet_dataset(tmp_path / "x", per_class=1, seed=0, progress=False)
    with pytest.raises(SynthError):
        write_sem_dataset(tmp_path / "y", per_class=0, seed=0, progress=False)
    with pytest.raises(SynthError):
        write_sem_dataset(tmp_path / "z", per_class=1, seed=0, classes=["lactose"], progress=False)
    with pytest.raises(SynthError):
        read_params(tmp_path / "x")


def test_tablet_contact_sheet_has_one_labelled_tile_per_class():
    sheet = contact_sheet("tablets", 1, tile_width=200)
    assert sheet.dtype == np.uint8 and sheet.ndim == 2
    assert sheet.shape[1] == 3 * 200 + 2 * 4  # three columns with 4-px gaps
    tile_h = (sheet.shape[0] - 4) // 2
    for r in range(2):
        for c in range(3):
            tile = sheet[r * (tile_h + 4) : r * (tile_h + 4) + tile_h, c * 204 : c * 204 + 200]
            label = tile[-34:]
            assert (label < 128).any(), "each tile carries a label"
            assert tile[:-34].std() > 10, "each tile shows an image"
    with pytest.raises(SynthError):
        contact_sheet("xray", 0)


def test_cli_synth_sem_in_a_subprocess(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "inspector", "synth", "sem", str(tmp_path / "d"), "--per-class", "1", "--seed", "4",
         "--classes", "dried_corn_starch", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "dried_corn_starch" / "0000.png").is_file()
    assert "wrote SEM dataset" in r.stdout


def test_cli_synth_sheet_and_one_line_errors(tmp_path, capsys):
    from inspector.cli import main

    assert main(["synth", "sheet", str(tmp_path / "s.png"), "--kind", "tablets", "--view", "closeup", "--seed", "1"]) == 0
    sheet = cv2.imread(str(tmp_path / "s.png"), cv2.IMREAD_GRAYSCALE)
    assert sheet is not None and sheet.shape[1] == 3 * 384 + 2 * 4
    capsys.readouterr()
    assert main(["synth", "sem", str(tmp_path / "e"), "--per-class", "1", "--classes", "talc"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown SEM class") and err.count("\n") == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    assert main(["synth", "tablets", str(tmp_path / "full"), "--per-class", "1"]) == 1
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse rejects a negative seed before anything runs
        main(["synth", "tablets", str(tmp_path / "n"), "--per-class", "1", "--seed", "-1"])
