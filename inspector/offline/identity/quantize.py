"""Optional int8 static quantisation of an identity model on CPU, gated by top-1 agreement.

ONNX Runtime static quantisation in QDQ format, weights per channel (int8, symmetric), activations
uint8 calibrated by min/max over *calibration tiles*. (``quantize_dynamic`` is no use on CNNs: its
ConvInteger kernels are ~5x slower than fp32 here.) The dense head stays in float so that the
probabilities and the numpy Grad-CAM keep the exported head weights.

The quantised model is accepted only if its top-1 class agrees with the fp32 model's on at least
``min_agreement`` (99 %) of *held-out tiles* (never used for calibration). Then a new model version
is written: ``model.int8.onnx`` (served when the inspection's ``precision`` is ``int8``), the fp32
``model.onnx`` and ``head.npz`` it came from, a Markdown report ``quantization.md`` and a manifest
whose metrics carry the agreement. Otherwise nothing is versioned: the report says why and
:class:`QuantizationRefused` is raised.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.identity.gradcam import HEAD_ARTIFACT
from inspector.identity.runtime import ARTIFACTS
from inspector.identity.tiling import preprocess
from inspector.modelrepo import MANIFEST, Manifest, ModelDir, load_model_dir, write_model_dir

log = logging.getLogger("inspector.offline.identity.quantize")

INT8_ARTIFACT = ARTIFACTS["int8"]
FP32_ARTIFACT = ARTIFACTS["fp32"]
REPORT = "quantization.md"


class QuantizationRefused(InspectorError):
    """int8 top-1 agreement with fp32 is below the threshold: no model version was written."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def _as_input(tiles: np.ndarray, mode: str, tile: int) -> np.ndarray:
    """Grey uint8 tiles (n, t, t) are preprocessed with the manifest's mode; (n, t, t, 3) floats pass as is."""
    t = np.asarray(tiles)
    if t.ndim == 3:
        t = preprocess(t, mode)
    if t.ndim != 4 or t.shape[1:] != (tile, tile, 3) or len(t) == 0:
        raise InspectorError(f"need a non-empty set of ({tile}, {tile}) grey tiles, got shape {np.shape(tiles)}")
    return np.ascontiguousarray(t, dtype=np.float32)


def _batches(x: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    for i in range(0, len(x), batch):
        yield x[i:i + batch]


def _predict(path: Path, x: np.ndarray, batch: int, threads: int) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["probs"], {"tiles": b})[0] for b in _batches(x, batch)])


def _head_nodes(onnx_path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if "head_" in n.name]


def quantize_onnx(fp32_path: Path, int8_path: Path, calib: np.ndarray, *, batch: int = 16,
                  progress: bool = True) -> None:
    """Static QDQ quantisation of ``fp32_path`` into ``int8_path`` with calibration inputs ``calib``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tqdm import tqdm

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tqdm(list(_batches(calib, batch)), desc="calibrating", unit="batch",
                                 disable=not progress))

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._it, None)
            return None if b is None else {"tiles": b}

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(src), skip_symbolic_shape=True)
        except Exception as e:  # noqa: BLE001 — pre-processing is an optimisation only
            log.warning("quantisation pre-processing skipped: %s", str(e).splitlines()[0] if str(e) else e)
            src = fp32_path
        quantize_static(
            str(src), str(int8_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=_head_nodes(Path(src)),
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )


def _markdown(r: dict[str, Any]) -> str:
    ok = r["accepted"]
    lines = [
        f"# int8 quantisation of {r['source']['name']}/{r['source']['version']}",
        "",
        f"**Decision: {'ACCEPTED' if ok else 'REFUSED'}** — top-1 agreement with fp32 on held-out tiles "
        f"{r['agreement']:.2%} {'≥' if ok else '<'} required {r['min_agreement']:.2%}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| calibration tiles | {r['calibration_tiles']} |",
        f"| held-out tiles (not used for calibration) | {r['heldout_tiles']} |",
        f"| tiles whose top-1 class changed | {r['disagreements']} |",
        f"| max abs. probability difference | {r['max_abs_prob_diff']:.4f} |",
        f"| mean abs. probability difference | {r['mean_abs_prob_diff']:.5f} |",
        "| method | ONNX Runtime static QDQ, per-channel int8 weights, uint8 activations (min/max), head in float |",
        f"| quantisation time | {r['seconds']:.1f} s |",
        "",
        "Per class (fp32 top-1 on held-out tiles):",
        "",
        "| class | tiles | agreement |",
        "|---|---|---|",
    ]
    for cls, v in r["per_class"].items():
        lines.append(f"| {cls} | {v['tiles']} | {v['agreement']:.2%} |")
    lines += ["", f"Output: {r['output'] if ok else 'none (no model version written)'}", ""]
    return "\n".join(lines)


def quantize_model(model_dir: ModelDir | str | Path, calib_tiles: np.ndarray, heldout_tiles: np.ndarray,
                   out_dir: str | Path, min_agreement: float = 0.99, *, version: str | None = None,
                   batch: int = 16, threads: int = 1, progress: bool = True,
                   command: str | None = None) -> dict[str, Any]:
    """Quantise ``model_dir`` to int8 and write ``out_dir`` as a new version if it agrees with fp32.

    ``calib_tiles`` and ``heldout_tiles``: grey uint8 (n, t, t) tiles (preprocessed here with the
    manifest's mode) or already preprocessed (n, t, t, 3) float32; they must come from different
    frames. Returns the report dict (also written as ``quantization.md``); raises
    :class:`QuantizationRefused` when the agreement is below ``min_agreement``.
    """
    md = model_dir if isinstance(model_dir, ModelDir) else load_model_dir(model_dir)
    src = md.manifest
    if FP32_ARTIFACT not in src.artifacts or HEAD_ARTIFACT not in src.artifacts:
        raise InspectorError(f"{md.path} is not an exported identity model (needs {FP32_ARTIFACT} and {HEAD_ARTIFACT})")
    if not 0.0 < min_agreement <= 1.0:
        raise InspectorError(f"min_agreement must be in (0, 1], got {min_agreement}")
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        raise InspectorError(f"{out} already holds a model version; choose another --out")
    mode = str(src.preprocessing.get("mode", "none"))
    tile = int(src.preprocessing.get("tile", 224))
    calib = _as_input(calib_tiles, mode, tile)
    held = _as_input(heldout_tiles, mode, tile)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    int8_path = out / INT8_ARTIFACT
    quantize_onnx(md.artifact(FP32_ARTIFACT), int8_path, calib, batch=batch, progress=progress)
    p32 = _predict(md.artifact(FP32_ARTIFACT), held, batch, threads)
    p8 = _predict(int8_path, held, batch, threads)
    top32, top8 = p32.argmax(1), p8.argmax(1)
    agree = top32 == top8
    per_class = {}
    for i, cls in enumerate(src.classes):
        sel = top32 == i
        if sel.any():
            per_class[cls] = {"tiles": int(sel.sum()), "agreement": float(agree[sel].mean())}
    version = version or out.name
    report: dict[str, Any] = {
        "source": {"name": src.name, "version": src.version, "sha256": src.artifacts[FP32_ARTIFACT]["sha256"]},
        "accepted": bool(agree.mean() >= min_agreement),
        "agreement": float(agree.mean()),
        "min_agreement": float(min_agreement),
        "calibration_tiles": int(len(calib)),
        "heldout_tiles": int(len(held)),
        "disagreements": int((~agree).sum()),
        "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
        "mean_abs_prob_diff": float(np.abs(p32 - p8).mean()),
        "per_class": per_class,
        "seconds": time.perf_counter() - t0,
        "output": str(out),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / REPORT).write_text(_markdown(report), encoding="utf-8")
    if not report["accepted"]:
        int8_path.unlink(missing_ok=True)
        raise QuantizationRefused(
            f"int8 model refused: top-1 agreement with fp32 {report['agreement']:.2%} < {min_agreement:.2%} "
            f"on {len(held)} held-out tiles (report: {out / REPORT})", report)
    for name in (FP32_ARTIFACT, HEAD_ARTIFACT):
        shutil.copyfile(md.artifact(name), out / name)
    extra = dict(src.extra)
    extra.update(precision="int8", quantized_from=report["source"],
                 quantization={"format": "QDQ", "weights": "int8 per-channel symmetric",
                               "activations": "uint8 min/max", "head": "float"})
    training = dict(src.training)
    if command:
        training["quantization_command"] = command
    metrics = dict(src.metrics)
    metrics["int8"] = {k: report[k] for k in ("agreement", "min_agreement", "heldout_tiles", "calibration_tiles",
                                              "max_abs_prob_diff", "mean_abs_prob_diff")}
    manifest = Manifest(
        name=src.name, version=version, task=src.task,
        artifacts={INT8_ARTIFACT: {}, FP32_ARTIFACT: {}, HEAD_ARTIFACT: {}, REPORT: {}},
        classes=list(src.classes), thresholds=dict(src.thresholds), input=dict(src.input),
        preprocessing=dict(src.preprocessing), metrics=metrics, training=training, extra=extra,
    )
    write_model_dir(out, manifest)
    log.info("int8 model accepted (agreement %.2f%%): %s", 100 * report["agreement"], out)
    return report
