"""Serving side of the identity CNN: ONNX export + manifest, ORT parity, numpy Grad-CAM, providers, int8 gate.

Uses the "tiny" backbone (part 1's contract) with a randomly initialised but deterministic head, and
procedural tiles (blobs vs stripes), so nothing depends on the synthetic SEM generator.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inspector.errors import ConfigError, ModelIntegrityError
from inspector.identity import runtime
from inspector.offline.identity.backbones import get_spec
from inspector.identity.gradcam import HEAD_ARTIFACT, DenseHead, frame_overlay, gradcam, normalise, tile_overlay
from inspector.identity.tiling import preprocess
from inspector.modelrepo import load_model_dir

CLASSES = ["blobs", "stripes", "speckle"]


def procedural_tiles(n: int, seed: int = 0, size: int = 224) -> np.ndarray:
    """Grey uint8 tiles cycling through three textures: bright blobs, oriented stripes, speckle."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            img = np.full((size, size), 60, np.float32)
            for _ in range(12):
                cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(8, 30)]
                img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        elif kind == 1:
            theta, period = rng.uniform(0, np.pi), rng.uniform(8, 24)
            img = 128 + 90 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        else:
            img = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 1.5)
        out[i] = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return out


def _classifier(seed: int):
    """A tiny classifier trained briefly on the three procedural textures (confident, not random)."""
    import keras

    from inspector.offline.identity.backbones import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier("tiny", len(CLASSES), hidden=16, dropout=0.0, train_layers="all")
    x = preprocess(procedural_tiles(48, seed=seed + 100), "tf")
    y = np.arange(48) % 3
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from inspector.offline.identity.export import export_model

    model = _classifier(1)
    out = tmp_path_factory.mktemp("repo") / "identity-test" / "3"
    x = preprocess(procedural_tiles(6, seed=5), "tf")
    md = export_model(model, out, name="identity-test", version="3", classes=CLASSES, backbone="tiny",
                      preprocess_mode="tf", metrics={"val_tile_accuracy": 0.5}, training={"command": "pytest"},
                      check_tiles=x)
    return model, md


def test_export_writes_a_verified_model_version(exported):
    _, md = exported
    m = md.manifest
    assert (m.name, m.version, m.task) == ("identity-test", "3", "excipient_identity")
    assert m.classes == CLASSES
    assert list(m.artifacts) == ["model.onnx", HEAD_ARTIFACT]
    assert m.preprocessing == {"mode": "tf", "tile": 224, "channels": 3, "crop_data_bar": True}
    assert m.input["name"] == "tiles" and m.input["shape"] == [None, 224, 224, 3]
    assert m.extra["opset"] >= 17 and m.extra["backbone"] == "tiny"
    assert m.extra["last_conv_layer"] == get_spec("tiny").last_conv_layer
    assert m.extra["outputs"]["conv_map"] == [None, 14, 14, 64]
    assert m.extra["parity"]["max_rel_diff_probs"] <= 1e-4
    assert m.metrics == {"val_tile_accuracy": 0.5} and m.training == {"command": "pytest"}
    assert load_model_dir(md.path).manifest.sha256 == m.sha256  # re-verifies every sha256


def test_onnx_runtime_matches_keras_on_the_same_tiles(exported):
    from inspector.offline.identity.export import relative_difference

    model, md = exported
    x = preprocess(procedural_tiles(9, seed=11), "tf")
    om = runtime.OrtModel(md, ["CPUExecutionProvider"])
    got = om.run(x)
    want = np.asarray(model(x, training=False))
    assert got["probs"].shape == (9, 3)
    assert relative_difference(got["probs"], want) <= 1e-4
    assert not np.allclose(want, want[0])  # the probe really distinguishes tiles
    # pooled is the spatial mean of conv_map (the contract the closed-form Grad-CAM relies on)
    np.testing.assert_allclose(got["pooled"], got["conv_map"].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    head = DenseHead.load(md.artifact(HEAD_ARTIFACT))
    logits = head.logits(got["pooled"])
    soft = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(soft / soft.sum(1, keepdims=True), got["probs"], atol=1e-5)


def test_numpy_gradcam_equals_tensorflow_gradient_tape(exported):
    model, md = exported
    x = preprocess(procedural_tiles(6, seed=3), "tf")
    out = runtime.OrtModel(md, ["CPUExecutionProvider"]).run(x)
    head = DenseHead.load(md.artifact(HEAD_ARTIFACT))
    from inspector.offline.identity.gradcam_tf import grad_cam_raw  # part 1's TF GradientTape reference

    predicted = out["probs"].argmax(1)
    scale = float(grad_cam_raw(model, x, predicted)[0].max())
    assert scale > 0  # the predicted class always has some positive evidence
    for cls in (predicted, np.zeros(6, np.int64), np.array([2, 1, 0, 2, 1, 0])):
        want, used = grad_cam_raw(model, x, cls)
        np.testing.assert_array_equal(used, cls)
        got = gradcam(out["conv_map"], out["pooled"], head, cls)
        assert got.shape == want.shape == (6, 14, 14)
        assert np.max(np.abs(got - want)) / scale <= 1e-4


def test_gradcam_overlays_are_images_of_the_right_size(exported):
    _, md = exported
    tiles = procedural_tiles(4, seed=8)
    out = runtime.OrtModel(md, ["CPUExecutionProvider"]).run(preprocess(tiles, "tf"))
    head = DenseHead.load(md.artifact(HEAD_ARTIFACT))
    cams = normalise(gradcam(out["conv_map"], out["pooled"], head, out["probs"].argmax(1)))
    assert cams.max() == pytest.approx(1.0) and cams.min() >= 0
    assert tile_overlay(tiles[0], cams[0]).shape == (224, 224, 3)
    frame = np.zeros((500, 460), np.uint8)
    origins = [(26, 6), (26, 230), (250, 6), (250, 230)]
    img = frame_overlay(frame, cams, origins, 224)
    assert img.shape == (500, 460, 3) and img.dtype == np.uint8
    assert img[:26].max() == 0 and img[26:474, 6:454].max() > 0  # heat only inside the tile grid


def test_head_file_refuses_pickles_and_bad_shapes(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "head.npz", dense_kernel=np.array([{"a": 1}], dtype=object),
             dense_bias=np.zeros(2), logits_kernel=np.zeros((2, 3)), logits_bias=np.zeros(3))
    with pytest.raises(ModelIntegrityError):
        DenseHead.load(tmp_path / "head.npz")
    np.savez(tmp_path / "head2.npz", dense_kernel=np.zeros((4, 2)), dense_bias=np.zeros(3),
             logits_kernel=np.zeros((2, 3)), logits_bias=np.zeros(3))
    with pytest.raises(ModelIntegrityError, match="inconsistent"):
        DenseHead.load(tmp_path / "head2.npz")


def test_export_refuses_overwrite_and_class_count_mismatch(exported, tmp_path):
    from inspector.offline.identity.export import ExportError, export_model

    model, md = exported
    with pytest.raises(ExportError, match="already holds"):
        export_model(model, md.path, name="x", version="3", classes=CLASSES, backbone="tiny", preprocess_mode="tf")
    with pytest.raises(ExportError, match="3 outputs but 2"):
        export_model(model, tmp_path / "v", name="x", version="1", classes=CLASSES[:2], backbone="tiny",
                     preprocess_mode="tf")


def test_tampered_model_file_is_refused(exported, tmp_path):
    _, md = exported
    copy = tmp_path / "identity-test" / "3"
    shutil.copytree(md.path, copy)
    blob = bytearray((copy / "model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(blob))
    with pytest.raises(ModelIntegrityError, match="sha256 of model.onnx"):
        load_model_dir(copy)


def test_export_with_backbone_weights_from_a_local_file(tmp_path):
    """weights=PATH: a small locally saved backbone weights file is loaded, exported and served."""
    import keras

    from inspector.offline.identity.backbones import build_backbone, build_classifier
    from inspector.offline.identity.export import export_model

    keras.utils.set_random_seed(7)
    base = build_backbone("tiny")
    wfile = tmp_path / "tiny_notop.weights.h5"
    base.save_weights(str(wfile))
    model = build_classifier("tiny", 2, weights=str(wfile), hidden=8)
    k_file = base.get_layer("block4_conv2").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("block4_conv2").get_weights()[0], k_file)
    md = export_model(model, tmp_path / "m" / "1", name="m", version="1", classes=["a", "b"], backbone="tiny",
                      preprocess_mode="tf", training={"weights": wfile.name})
    x = preprocess(procedural_tiles(3), "tf")
    out = runtime.OrtModel(md, ["CPUExecutionProvider"]).run(x)
    np.testing.assert_allclose(out["probs"], np.asarray(model(x, training=False)), rtol=1e-4, atol=1e-6)


# ---- execution providers -------------------------------------------------------------------------

ALL = [runtime.TENSORRT, runtime.CUDA, runtime.CPU]


def test_provider_selection_keeps_configured_order_and_wires_tensorrt_options(tmp_path):
    chosen = runtime.select_providers(ALL, ["CPUExecutionProvider", "CUDAExecutionProvider",
                                            "TensorrtExecutionProvider"], cache_dir=tmp_path)
    assert [p for p, _ in chosen] == ALL
    trt = chosen[0][1]
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(tmp_path)
    assert chosen[1][1] == {"device_id": 0} and chosen[2][1] == {}
    # without TensorRT libraries (onnxruntime-gpu on a CUDA-only host): CUDA first
    assert [p for p, _ in runtime.select_providers(ALL, [runtime.CUDA, runtime.CPU], cache_dir=None)] == ALL[1:]
    # the CPU build: CPU only
    assert [p for p, _ in runtime.select_providers(ALL, [runtime.CPU], cache_dir=None)] == [runtime.CPU]
    with pytest.raises(ConfigError, match="none of the configured"):
        runtime.select_providers([runtime.TENSORRT], [runtime.CPU], cache_dir=None)
    with pytest.raises(ValueError, match="unknown execution provider"):
        runtime.check_provider_names(["TensorRT"])


def test_ort_model_passes_providers_to_the_session_and_logs_the_one_that_runs(exported, tmp_path, monkeypatch,
                                                                                caplog):
    import onnxruntime as ort

    _, md = exported
    seen = {}
    real = ort.InferenceSession

    class Recorder(real):  # a real CPU session that records what it was asked for
        def __init__(self, path, sess_options=None, providers=None, provider_options=None):
            seen.update(providers=providers, options=provider_options)
            super().__init__(path, sess_options=sess_options, providers=[runtime.CPU])

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(reversed(ALL)))
    monkeypatch.setattr(ort, "InferenceSession", Recorder)
    with caplog.at_level("INFO", logger="inspector.identity.runtime"):
        om = runtime.OrtModel(md, ALL, cache_dir=tmp_path / "trt-cache", intra_op_threads=1)
    assert seen["providers"] == ALL
    cache = Path(seen["options"][0]["trt_engine_cache_path"])
    assert cache == tmp_path / "trt-cache" / md.manifest.artifacts["model.onnx"]["sha256"][:16] and cache.is_dir()
    # TensorRT was asked for but the session runs on CPU: that is what is reported, as a warning
    assert om.provider == runtime.CPU
    rec = [r for r in caplog.records if "runs on CPUExecutionProvider" in r.getMessage()]
    assert rec and rec[0].levelname == "WARNING"


def test_ort_model_rejects_wrong_tile_shapes(exported):
    _, md = exported
    om = runtime.OrtModel(md, [runtime.CPU])
    assert om.provider == runtime.CPU and om.classes == CLASSES
    with pytest.raises(ValueError, match="expected preprocessed tiles"):
        om.run(np.zeros((2, 224, 224, 1), np.float32))
    with pytest.raises(ConfigError, match="no int8 artifact"):
        runtime.OrtModel(md, [runtime.CPU], precision="int8")


# ---- int8 quantisation gate -----------------------------------------------------------------------

def test_int8_quantisation_accepted_writes_a_new_version(exported, tmp_path):
    from inspector.offline.identity.quantize import quantize_model

    _, md = exported
    out = tmp_path / "identity-test" / "3-int8"
    report = quantize_model(md, procedural_tiles(24, seed=21), procedural_tiles(30, seed=22), out, progress=False)
    assert report["accepted"] and report["agreement"] >= 0.99 and report["heldout_tiles"] == 30
    q = load_model_dir(out)
    assert list(q.manifest.artifacts)[0] == "model.int8.onnx"
    assert q.manifest.metrics["int8"]["agreement"] == report["agreement"]
    assert q.manifest.extra["precision"] == "int8" and q.manifest.classes == CLASSES
    assert "ACCEPTED" in (out / "quantization.md").read_text()
    om = runtime.OrtModel(q, [runtime.CPU], precision="int8")
    x = preprocess(procedural_tiles(6, seed=23), "tf")
    p32 = runtime.OrtModel(md, [runtime.CPU]).run(x)["probs"]
    assert np.mean(om.run(x)["probs"].argmax(1) == p32.argmax(1)) >= 5 / 6


def test_int8_quantisation_below_agreement_is_refused(exported, tmp_path, monkeypatch):
    """A quantised model that changes the top-1 class is refused: no manifest, the report says why."""
    import onnx
    from onnx import numpy_helper

    from inspector.offline.identity import quantize
    from inspector.offline.identity.quantize import QuantizationRefused, quantize_model

    _, md = exported

    def broken_quantizer(fp32_path, int8_path, calib, **_):
        m = onnx.load(str(fp32_path))  # a "quantised" model whose class outputs are rotated by one
        for init in m.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.shape[-1:] == (len(CLASSES),) and arr.ndim in (1, 2):
                init.CopyFrom(numpy_helper.from_array(np.roll(arr, 1, axis=-1), init.name))
        onnx.save(m, str(int8_path))

    monkeypatch.setattr(quantize, "quantize_onnx", broken_quantizer)
    out = tmp_path / "identity-test" / "bad"
    with pytest.raises(QuantizationRefused, match="refused: top-1 agreement") as e:
        quantize_model(md, procedural_tiles(6, seed=1), procedural_tiles(12, seed=2), out, progress=False)
    assert e.value.report["agreement"] < 0.99 and not e.value.report["accepted"]
    assert not (out / "manifest.json").exists() and not (out / "model.int8.onnx").exists()
    assert "REFUSED" in (out / "quantization.md").read_text()


# ---- CLI ------------------------------------------------------------------------------------------

def _write_frames(root: Path, per_class: int) -> None:
    import cv2

    for c, name in enumerate(CLASSES[:2]):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            t = procedural_tiles(3 * 4, seed=100 * c + i)[c::3][:4]  # four tiles of this class's texture
            frame = np.block([[t[0], t[1]], [t[2], t[3]]])
            cv2.imwrite(str(d / f"{i:02d}.png"), frame)


def test_cli_export_and_quantize_identity(tmp_path, monkeypatch, capsys):
    import keras

    from inspector import cli

    if "inspector.offline.identity.cli_export" not in cli.PLUGINS:
        monkeypatch.setattr(cli, "PLUGINS", [*cli.PLUGINS, "inspector.offline.identity.cli_export"])
    keras.utils.set_random_seed(3)
    from inspector.offline.identity.backbones import build_classifier

    model = build_classifier("tiny", 2, hidden=8)
    kfile = tmp_path / "trained" / "model.keras"
    kfile.parent.mkdir()
    model.save(str(kfile))
    (tmp_path / "trained" / "model.json").write_text(json.dumps({"classes": CLASSES[:2]}))
    out = tmp_path / "models" / "identity-cli" / "1"
    assert cli.main(["export", "identity", str(kfile), "--out", str(out)]) == 0
    m = load_model_dir(out).manifest
    assert (m.name, m.version, m.classes) == ("identity-cli", "1", CLASSES[:2])
    assert m.training["export_command"].startswith("inspector ")
    # exporting again into the same version is a user error, not a traceback
    assert cli.main(["export", "identity", str(kfile), "--out", str(out)]) == 1
    assert "already holds a model version" in capsys.readouterr().err

    data = tmp_path / "frames"
    _write_frames(data, per_class=4)
    q = tmp_path / "models" / "identity-cli" / "2"
    rc = cli.main(["quantize", "identity", str(out), "--calib", str(data), "--out", str(q), "--no-progress"])
    err = capsys.readouterr().err
    assert (rc, (q / "manifest.json").exists()) in ((0, True), (1, False)), err
    assert (q / "quantization.md").is_file()
    if rc == 0:
        assert load_model_dir(q).manifest.metrics["int8"]["heldout_tiles"] == 16  # 2 of 4 frames per class
