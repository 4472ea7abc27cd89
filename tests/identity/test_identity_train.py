"""Identity training / evaluation (TF): frame-wise splits, metrics, CV + report, training + export, Grad-CAM.

Runs the real pipeline end to end on tiny procedural frames (3 visually distinct classes) with the
"tiny" backbone, so that the whole file stays well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.offline.identity.data import DatasetError, Split, TileDataset, cv_splits, load_dataset, train_val_split
from inspector.offline.identity.metrics import classification_metrics, confusion_matrix, frame_probabilities

pytestmark = pytest.mark.filterwarnings("ignore")

CLASSES = ("blobs", "fibres", "stripes")


def _frame(cls: str, seed: int, h: int = 448, w: int = 448) -> np.ndarray:
    """Procedural 'micrograph' of a class: bright round blobs, dark fibres, or oriented stripes."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.normal(110, 20, (h, w)).astype(np.float32)
    if cls == "blobs":
        for _ in range(60):
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(8, 20)), 230, -1)
    elif cls == "stripes":
        yy, xx = np.mgrid[0:h, 0:w]
        a = rng.uniform(0, np.pi)
        img += 70 * np.sin((xx * np.cos(a) + yy * np.sin(a)) / rng.uniform(4, 7))
    else:
        for _ in range(40):
            x, y, a, length = int(rng.integers(0, w)), int(rng.integers(0, h)), rng.uniform(0, np.pi), rng.uniform(40, 90)
            cv2.line(img, (x, y), (int(x + length * np.cos(a)), int(y + length * np.sin(a))), 30, int(rng.integers(3, 7)))
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """3 classes × 5 frames of 448×448 (4 tiles each); one frame per class carries a data bar."""
    import cv2

    root = tmp_path_factory.mktemp("identity-data")
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(5):
            img = _frame(name, 100 * c + i)
            if i == 0:  # an SEM-style data bar must be cropped, not tiled
                bar = np.full((64, img.shape[1]), 1, np.uint8)
                cv2.putText(bar, "x1,000 15.0kV SE", (40, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
                img = np.vstack([img, bar])
            cv2.imwrite(str(root / name / f"{i:02d}.png"), img)
    return root


@pytest.fixture(scope="module")
def dataset(data_dir) -> TileDataset:
    return load_dataset(data_dir, progress=False)


# --- splits and metrics (no TensorFlow) ---------------------------------------------------------

def test_cv_splits_are_disjoint_by_source_frame():
    frame_labels = np.repeat(np.arange(10), 10)  # the paper: 10 classes × 10 frames
    splits = cv_splits(frame_labels, folds=5, seed=3)
    assert len(splits) == 5
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested.tolist()) == list(range(100))  # every frame tested exactly once
    for s in splits:
        assert not set(s.train) & set(s.val) and not set(s.train) & set(s.test) and not set(s.val) & set(s.test)
        assert len(s.train) + len(s.val) + len(s.test) == 100
        for c in range(10):
            assert (np.sum(frame_labels[s.train] == c), np.sum(frame_labels[s.val] == c),
                    np.sum(frame_labels[s.test] == c)) == (6, 2, 2)
    # tiles follow their frames: 20 tiles per frame never straddle two sets
    frame_ids = np.repeat(np.arange(100), 20)
    ds = TileDataset(classes=[str(c) for c in range(10)], frames=[Path(f"{i}.png") for i in range(100)],
                     frame_labels=frame_labels, tiles=np.zeros((2000, 1, 1), np.uint8),
                     labels=np.repeat(frame_labels, 20), frame_ids=frame_ids, origins=[])
    for s in splits:
        sets = [set(ds.frame_ids[ds.tile_indices(part)]) for part in (s.train, s.val, s.test)]
        assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2]) and sets[1].isdisjoint(sets[2])
        assert sum(len(ds.tile_indices(p)) for p in (s.train, s.val, s.test)) == 2000
    assert [s.test.tolist() for s in cv_splits(frame_labels, 5, seed=3)] == [s.test.tolist() for s in splits]


def test_splits_refuse_too_few_frames():
    with pytest.raises(DatasetError, match="at least 5 per class"):
        cv_splits(np.repeat(np.arange(3), 4), folds=5)
    with pytest.raises(DatasetError, match="at least 3 folds"):
        cv_splits(np.repeat(np.arange(3), 4), folds=2)
    s = train_val_split(np.repeat(np.arange(3), 10), 0.2, seed=1)
    assert len(s.val) == 6 and len(s.train) == 24 and not set(s.val) & set(s.train)
    with pytest.raises(DatasetError, match="at least 2"):
        train_val_split(np.array([0, 1, 1]), 0.2)


def test_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix as sk_cm, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 4, 300))
    y_pred[y_pred == 3] = 2  # class 3 never predicted: precision undefined -> 0
    cm = confusion_matrix(y_true, y_pred, 4)
    np.testing.assert_array_equal(cm, sk_cm(y_true, y_pred, labels=range(4)))
    m = classification_metrics(cm, ["a", "b", "c", "d"])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(4), zero_division=0)
    for i, name in enumerate("abcd"):
        assert m["per_class"][name]["precision"] == pytest.approx(p[i])
        assert m["per_class"][name]["recall"] == pytest.approx(r[i])
        assert m["per_class"][name]["f1"] == pytest.approx(f[i])
        assert m["per_class"][name]["support"] == s[i]
    assert m["mean_f1"] == pytest.approx(f.mean())
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    ids, fp = frame_probabilities(np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]]), np.array([4, 4, 9]))
    assert ids.tolist() == [4, 9]
    np.testing.assert_allclose(fp, [[0.6, 0.4], [0.2, 0.8]])


def test_dataset_loading_and_bad_inputs(dataset, data_dir, tmp_path):
    import cv2

    assert dataset.classes == list(CLASSES)
    assert len(dataset.frames) == 15 and dataset.tiles.shape == (60, 224, 224)
    assert np.bincount(dataset.frame_ids).tolist() == [4] * 15  # the data bar added no tile row
    assert dataset.labels.tolist() == np.repeat(dataset.frame_labels, 4).tolist()
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope", progress=False)
    one = tmp_path / "one"
    (one / "a").mkdir(parents=True)
    cv2.imwrite(str(one / "a" / "0.png"), _frame("blobs", 0))
    with pytest.raises(DatasetError, match="at least 2 classes"):
        load_dataset(one, progress=False)
    (one / "b").mkdir()
    cv2.imwrite(str(one / "b" / "0.png"), np.zeros((100, 300), np.uint8))
    with pytest.raises(DatasetError, match=r"b/0.png.*smaller than one"):
        load_dataset(one, progress=False)
    (one / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read image"):
        load_dataset(one, progress=False)


# --- TensorFlow ----------------------------------------------------------------------------------

def test_tf_preprocess_equals_numpy_preprocess():
    from inspector.identity.tiling import PREPROCESS_MODES, preprocess
    from inspector.offline.identity.train import tf_preprocess

    tiles = np.random.default_rng(2).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    for mode in PREPROCESS_MODES:
        np.testing.assert_allclose(np.asarray(tf_preprocess(tiles, mode)), preprocess(tiles, mode), atol=1e-5)


def test_tf_dataset_batches_preprocesses_and_augments_by_symmetry():
    from inspector.identity.tiling import preprocess
    from inspector.offline.identity.train import make_dataset

    rng = np.random.default_rng(3)
    tiles = rng.integers(0, 256, (7, 12, 12), dtype=np.uint8)
    labels = np.arange(7)
    plain = list(make_dataset(tiles, labels, "caffe", 3, shuffle=False))
    assert [len(y) for _, y in plain] == [3, 3, 1]
    np.testing.assert_allclose(np.concatenate([np.asarray(x) for x, _ in plain]), preprocess(tiles, "caffe"))
    seen = []
    for x, y in make_dataset(tiles, labels, "none", 4, shuffle=True, seed=1, augment=True):
        for xi, yi in zip(np.asarray(x), np.asarray(y), strict=True):
            grey = xi[..., 0].astype(np.uint8)
            variants = [np.rot90(t, k) for t in (tiles[yi], tiles[yi][:, ::-1]) for k in range(4)]
            assert any(np.array_equal(grey, v) for v in variants)  # a flip/quarter turn of its own tile
            seen.append(int(yi))
    assert sorted(seen) == labels.tolist()


def test_grad_cam_tf_equals_closed_form_from_head_weights():
    """TF GradientTape Grad-CAM == the numpy closed form serving uses (from conv map, pooled, head)."""
    import keras

    from inspector.offline.identity.backbones import build_classifier, explainer_model
    from inspector.offline.identity.export import head_from_keras
    from inspector.identity.gradcam import gradcam as numpy_gradcam
    from inspector.offline.identity.gradcam_tf import grad_cam, grad_cam_raw

    keras.utils.set_random_seed(4)
    model = build_classifier("tiny", 3, hidden=16)
    for w in model.get_layer("head_logits").weights:  # a head with clear class preferences
        w.assign(np.random.default_rng(5).normal(0, 0.5, w.shape).astype(np.float32))
    x = np.random.default_rng(6).uniform(-1, 1, (4, 224, 224, 3)).astype(np.float32)
    probs, conv_map, pooled = (np.asarray(t) for t in explainer_model(model)(x, training=False))
    head = head_from_keras(model)
    peaks = []
    for cls in (None, 1, np.array([2, 0, 1, 2])):
        tf_cam, used = grad_cam_raw(model, x, cls)
        want = probs.argmax(1) if cls is None else np.broadcast_to(cls, (4,))
        np.testing.assert_array_equal(used, want)
        np_cam = numpy_gradcam(conv_map, pooled, head, want)
        assert tf_cam.shape == (4, 14, 14)
        np.testing.assert_allclose(tf_cam, np_cam, rtol=1e-4, atol=1e-4 * max(float(np_cam.max()), 1e-6))
        peaks.append(float(np_cam.max()))
    assert max(peaks) > 0  # not a trivially all-zero comparison
    norm = grad_cam(model, x, np.array([2, 0, 1, 2]))
    peak = norm.reshape(4, -1).max(1)
    assert norm.shape == (4, 14, 14) and norm.min() >= 0 and np.all((np.isclose(peak, 1.0)) | (peak == 0))


def _run_cli(argv: list[str]) -> int:
    from inspector.cli import main

    return main(argv)


def _png_ok(path: Path) -> None:
    import cv2

    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 200, path


def test_evaluate_cli_end_to_end(data_dir, tmp_path):
    report = tmp_path / "report"
    rc = _run_cli(["evaluate", "identity", str(data_dir), "--backbone", "tiny", "--weights", "none",
                   "--folds", "3", "--epochs", "3", "--patience", "2", "--lr", "0.1", "--batch", "8",
                   "--hidden", "32", "--report", str(report), "--no-progress"])
    assert rc == 0
    for name in ("confusion_matrix.png", "confusion_matrix_frames.png", "class_metrics.png",
                 "training_curves.png", "gradcam_tiles.png", "gradcam_frame.png", "gradcam_frame_overlay.png"):
        _png_ok(report / name)
    m = json.loads((report / "metrics.json").read_text())
    assert m["classes"] == list(CLASSES) and m["folds"] == 3
    cm = np.array(m["tiles"]["confusion_matrix"])
    assert cm.sum() == 60 and cm.sum(axis=1).tolist() == [20, 20, 20]  # every tile tested exactly once
    assert np.array(m["frames"]["confusion_matrix"]).sum() == 15
    assert m["tiles"]["pooled"]["accuracy"] == pytest.approx(np.trace(cm) / 60)
    assert m["config"]["weights"] == "none — trained from scratch" and m["config"]["train_layers"] == "all"
    assert m["grid"] is None and not (report / "grid_lr_batch.png").exists()
    for fold in m["per_fold"]:
        tr, va, te = (set(fold["frames"][k]) for k in ("train", "val", "test"))
        assert not (tr & va or tr & te or va & te) and len(tr | va | te) == 15
        assert fold["lr"] == 0.1 and fold["batch"] == 8 and fold["epochs_run"] <= 3
    md = (report / "report.md").read_text()
    assert "none — trained from scratch" in md and "| blobs |" in md and "![confusion matrix]" in md


def test_train_cli_learns_and_exports_with_local_weights(data_dir, tmp_path, capsys):
    import cv2

    from inspector.offline.identity.backbones import build_backbone
    from inspector.identity.tiling import frame_tiles, preprocess
    from inspector.modelrepo import load_model_dir

    weights = tmp_path / "tiny_notop.weights.h5"
    build_backbone("tiny", weights=None).save_weights(str(weights))
    out = tmp_path / "models" / "excipient_identity" / "7"
    cal = tmp_path / "cal"  # fresh frames of the same classes for the open-set / drift calibration
    for c, name in enumerate(CLASSES):
        (cal / name).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(cal / name / f"{i:02d}.png"), _frame(name, 5000 + 100 * c + i))
    argv = ["train", "identity", str(data_dir), "--backbone", "tiny", "--weights", str(weights),
            "--train-layers", "all", "--grid", "--lrs", "0.1,0.0001", "--batches", "8", "--epochs", "6", "--patience", "6",
            "--hidden", "32", "--out", str(out), "--keras", str(tmp_path / "k" / "model.keras"),
            "--report", str(tmp_path / "train-report"), "--calibrate", str(cal), "--no-progress"]
    assert _run_cli(argv) == 0
    md = load_model_dir(out)  # sha256-verified
    man = md.manifest
    assert (man.name, man.version, man.task) == ("excipient_identity", "7", "excipient_identity")
    assert man.classes == list(CLASSES) and man.preprocessing["mode"] == "tf"
    assert man.training["config"]["weights"] == "file tiny_notop.weights.h5"
    assert len(man.training["split"]["val_frames"]) == 3  # one frame per class validates
    # it learned (best-epoch weights restored): chance is 1/3 on these easily separable classes
    assert man.metrics["validation"]["tile_accuracy"] >= 0.6, man.training["history"]
    assert man.training["best_epoch"] <= man.training["epochs_run"] == 6
    grid = man.training["grid"]  # the lr × batch search ran, best cell chosen by validation accuracy
    assert grid["lrs"] == [0.1, 0.0001] and grid["batches"] == [8] and len(grid["val_accuracy"]) == 2
    assert grid["best"]["val_accuracy"] == max(v[0] for v in grid["val_accuracy"])
    assert man.training["lr"] == grid["best"]["lr"]
    _png_ok(tmp_path / "train-report" / "grid_lr_batch.png")
    _png_ok(tmp_path / "train-report" / "training_curves.png")
    assert json.loads((tmp_path / "k" / "model.json").read_text())["classes"] == list(CLASSES)
    # the exported ONNX model agrees with the Keras model on a new frame
    import keras
    import onnxruntime as ort

    tiles, _ = frame_tiles(_frame("stripes", 999))
    x = preprocess(tiles, "tf")
    k_probs = np.asarray(keras.models.load_model(str(tmp_path / "k" / "model.keras"), compile=False)(x))
    sess = ort.InferenceSession(str(md.artifact("model.onnx")), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["probs"], {"tiles": x})[0], k_probs, atol=1e-5)
    printed = capsys.readouterr().out
    assert "exported excipient_identity/7" in printed and "lot drift (embedding, morphology)" in printed
    # calibrated as part of training: the open-set block, its artifact (verified) and both drift views
    cal_md = load_model_dir(out)
    assert "openset.npz" in cal_md.manifest.artifacts and cal_md.manifest.thresholds["ood"] > 0
    assert cal_md.manifest.extra["openset"]["drift"]["morphology"]["threshold"] > 0
    # a second run into the same version is refused before any training
    assert _run_cli(argv) == 1
    assert "already holds a model version" in capsys.readouterr().err


def test_grid_mean_over_folds_ignores_diverged_cells():
    from inspector.offline.identity.evaluate import CVResult, FoldResult
    from inspector.offline.identity.train import FitResult, GridResult

    def fold(k: int, acc: list[list[float]]) -> FoldResult:
        best = FitResult(model=None, lr=0.1, batch=8, history={}, best_epoch=1, val_accuracy=1.0, epochs_run=1)
        grid = GridResult(lrs=[0.1, 0.01], batches=[8, 16], val_accuracy=np.array(acc), best=best,
                          epochs_run=np.ones((2, 2)))
        y = np.array([0, 1])
        m = classification_metrics(confusion_matrix(y, y, 2), ["a", "b"])
        return FoldResult(fold=k, split=Split(k, np.array([0]), np.array([1]), np.array([2])), lr=0.1, batch=8,
                          best_epoch=1, epochs_run=1, val_accuracy=1.0, history={}, grid=grid,
                          test_tiles=np.array([0, 1]), probs=np.eye(2), y_true=y, y_pred=y, metrics=m,
                          frame_metrics=m, frame_true=y, frame_pred=y)

    nan = float("nan")
    r = CVResult(classes=["a", "b"], config={}, folds=[fold(0, [[1.0, nan], [0.5, nan]]),
                                                     fold(1, [[0.5, 0.7], [0.5, nan]])], grid_used=True)
    np.testing.assert_allclose(r.grid_mean(), [[0.75, 0.7], [0.5, nan]])
    s = r.summary()
    assert s["grid"]["mean_val_accuracy"] == [[0.75, 0.7], [0.5, None]]
    assert s["tiles"]["confusion_matrix"] == [[2, 0], [0, 2]]


def test_cli_bad_inputs(data_dir, tmp_path, capsys):
    assert _run_cli(["train", "identity", str(data_dir), "--backbone", "tiny", "--weights",
                     str(tmp_path / "missing.h5"), "--out", str(tmp_path / "m" / "x" / "1")]) == 1
    assert "neither 'imagenet', 'none' nor an existing file" in capsys.readouterr().err
    assert _run_cli(["evaluate", "identity", str(tmp_path / "empty"), "--backbone", "tiny", "--weights", "none",
                     "--report", str(tmp_path / "r")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert _run_cli(["evaluate", "identity", str(data_dir), "--backbone", "tiny", "--weights", "none",
                     "--folds", "6", "--report", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "at least 6 per class" in capsys.readouterr().err


def test_imagenet_without_cache_trains_from_scratch_and_says_so(monkeypatch, tmp_path):
    from inspector.offline.identity.train import TrainConfig, config_dict, effective_train_layers, resolve_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    used, desc = resolve_weights("resnet50", "imagenet")
    assert used is None and "trained from scratch" in desc and "ImageNet" in desc
    cfg = TrainConfig(backbone="resnet50", weights="imagenet")
    assert effective_train_layers(cfg, used) == "all"
    assert config_dict(cfg, used, desc)["weights_loaded"] is False
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    assert resolve_weights("resnet50", "imagenet") == ("imagenet", "ImageNet (Keras cache)")
    assert effective_train_layers(cfg, "imagenet") == "last_block"
    assert resolve_weights("tiny", "imagenet") == (None, "none — tiny has no ImageNet weights; trained from scratch")
    with pytest.raises(InspectorError, match="learning rate"):
        TrainConfig(lr=-1).check()
    assert isinstance(Split(0, np.array([1]), np.array([2]), np.array([])), Split)
