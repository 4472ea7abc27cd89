"""Grouped cross-validation on real SEM images (shared/datasets/sem-microplastics): groups from file names,
group-disjoint folds where a class has enough groups, honest flags where it has not, and a small end-to-end
run of the benchmark (pretrained Lite0, frozen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.offline.identity.benchmark import group_of, grouped_splits
from inspector.offline.identity.data import TileDataset, list_frames

pytestmark = pytest.mark.filterwarnings("ignore")

SEM = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "sem-microplastics"


def _sem_or_skip() -> Path:
    if not SEM.is_dir():
        pytest.skip(f"real SEM dataset absent ({SEM})")
    return SEM


@pytest.mark.parametrize("name,group", [
    ("PAN_01_2kV_20201119.jpg", "PAN"), ("PE_13_3kV.jpg", "PE"), ("p12polyester_fibre.jpg", "polyester"),
    ("polyester_101.jpg", "polyester"), ("Foam_No0012.jpg", "Foam"), ("Particle_2_No0004.jpg", "Particle"),
    ("Particle_No0019.jpg", "Particle"), ("PS_Isopropyl_Alcohol_Suspension_0074.jpg", "PS_Isopropyl_Alcohol_Suspension"),
    ("Dove_men_acrylates_copolymer_microbeads_002.jpg", "Dove_men_acrylates_copolymer_microbeads"),
])
def test_group_is_the_file_name_prefix(name, group):
    assert group_of(name) == group


def _frames_only(root: Path) -> TileDataset:
    classes, frames = list_frames(root)
    z = np.zeros(0, np.int32)
    return TileDataset(classes=classes, frames=[p for p, _ in frames], frame_labels=np.array([c for _, c in frames]),
                       tiles=np.zeros((0, 224, 224), np.uint8), labels=z, frame_ids=z, origins=[])


def test_grouped_folds_never_share_a_group_and_flag_single_group_classes():
    data = _frames_only(_sem_or_skip())
    assert data.classes == ["fibre", "fragment", "pellet"] and len(data.frames) == 236
    for seed in (0, 1):
        splits, info = grouped_splits(data, 3, seed)
        assert info.within_group_classes == ["pellet"]  # one product: cannot be grouped
        seen_test = np.concatenate([s.test for s in splits])
        assert sorted(seen_test.tolist()) == list(range(len(data.frames)))  # every frame tested once
        for s in splits:
            assert not set(s.train) & set(s.val) and not set(s.train) & set(s.test) and not set(s.val) & set(s.test)
            for c in ("fibre", "fragment"):
                lab = data.classes.index(c)
                g_test = {info.groups[i] for i in s.test if data.frame_labels[i] == lab}
                g_fit = {info.groups[i] for i in np.concatenate([s.train, s.val]) if data.frame_labels[i] == lab}
                assert g_test and not g_test & g_fit, (c, g_test & g_fit)
            assert all(np.any(data.frame_labels[s.train] == c) for c in range(3))


def test_small_benchmark_run_writes_the_report(tmp_path):
    from inspector.offline.identity import efficientnet_lite
    from inspector.offline.identity.benchmark import run_benchmark
    from inspector.offline.identity.data import load_dataset, subset_per_class

    root = _sem_or_skip()
    try:
        efficientnet_lite.weights_path()
    except Exception as e:  # noqa: BLE001
        pytest.skip(str(e))
    data = subset_per_class(load_dataset(root, progress=False), 4)
    s = run_benchmark(data, tmp_path / "report", models=["lite0_frozen"], protocols=["random"], folds=3, repeats=1,
                      epochs=3, patience=3, cache_dir=str(tmp_path / "cache"), gradcam=False, progress=False)
    r = s["results"]["random/lite0_frozen"]
    assert r["frame_macro_f1"]["n"] == 3 and 0.0 <= r["frame_macro_f1"]["mean"] <= 1.0
    # pretrained features separate fibres, fragments and pellets well above chance even on 8 training frames
    assert r["frame_accuracy"]["mean"] > 0.5
    report = tmp_path / "report"
    assert (report / "summary.md").read_text().count("lite0_frozen") == 1
    assert (report / "random-lite0_frozen" / "confusion_matrix_frames.png").stat().st_size > 1000
