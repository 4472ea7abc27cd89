"""Train a texture model into a repository, serve it with the tablet_defect inspection, and refuse
tampered or unsafe artifacts."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import Config
from inspector.errors import ConfigError, ModelIntegrityError, ModelNotFoundError
from inspector.frame import Frame, FrameMeta
from inspector.inspections import inspection_class
from inspector.inspections.base import InspectionContext
from inspector.inspections.tablet_defect import TabletDefect
from inspector.offline.texture.dataset import data_sha256
from texture_helpers import texture_image as _texture


def _frame(pixels: np.ndarray) -> Frame:
    fmt = "RGB8" if pixels.ndim == 3 else "Mono8"
    return Frame(pixels, FrameMeta("cam0", 1, 0.0, pixels.shape[1], pixels.shape[0], fmt))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data dir, repository) with model tex/1 trained by the CLI on good vs streaks textures."""
    from inspector.cli import main

    root = tmp_path_factory.mktemp("tex")
    data = root / "data"
    for k, cls in enumerate(("good", "streaks")):
        (data / cls).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(data / cls / f"{i}.png"), _texture(cls, 50 * k + i))
    repo = root / "models"
    rc = main(["train", "texture", str(data), "--out", str(repo / "tex" / "1"), "--roi", "none", "--no-progress"])
    assert rc == 0
    return data, repo


def _ctx(repo: Path) -> InspectionContext:
    return InspectionContext(state_dir=repo.parent, models_dir=repo)


def test_train_writes_a_complete_manifest(trained: tuple[Path, Path]) -> None:
    data, repo = trained
    m = json.loads((repo / "tex" / "1" / "manifest.json").read_text())
    assert (m["name"], m["version"], m["task"]) == ("tex", "1", "tablet_defect")
    assert m["classes"] == ["good", "defect"] and m["thresholds"] == {"reject_probability": 0.5}
    assert m["input"]["levels"] == 64 and m["input"]["roi"] == "none" and len(m["input"]["features"]) == 15
    art = repo / "tex" / "1" / "pipeline.skops"
    assert m["artifacts"]["pipeline.skops"]["sha256"] == hashlib.sha256(art.read_bytes()).hexdigest()
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data.rglob("*.png"))]
    assert m["training"]["data_sha256"] == data_sha256(hashes)
    assert m["training"]["n_images"] == {"good": 8, "streaks": 8}
    assert m["training"]["command"].startswith(f"inspector train texture {data} --out ")
    assert 0.0 <= m["metrics"]["accuracy"] <= 1.0 and m["metrics"]["n"] == 16


def test_inspection_loads_the_model_and_gives_verdicts(trained: tuple[Path, Path]) -> None:
    _, repo = trained
    assert inspection_class("tablet_defect") is TabletDefect
    insp = TabletDefect(TabletDefect.Params(model="tex"), _ctx(repo))
    info = insp.model_info()
    manifest = json.loads((repo / "tex" / "1" / "manifest.json").read_text())
    assert (info.name, info.version, info.sha256) == ("tex", "1", manifest["artifacts"]["pipeline.skops"]["sha256"])

    good = insp.inspect(_frame(_texture("good", 999)))
    bad = insp.inspect(_frame(_texture("streaks", 998)))
    assert good.verdict == "pass" and bad.verdict == "reject"
    assert good.scores["p_defect"] < 0.5 <= bad.scores["p_defect"]
    assert set(bad.stages) == {"preprocess", "infer"}
    top = bad.detail["top_features"]
    assert len(top) == 3 and all(name in manifest["input"]["features"] for name, _, _ in top)
    rgb = insp.inspect(_frame(np.repeat(_texture("streaks", 997)[:, :, None], 3, axis=2)))
    assert rgb.verdict == "reject"

    strict = TabletDefect(TabletDefect.Params(model="tex", threshold=1e-6), _ctx(repo))
    assert strict.inspect(_frame(_texture("good", 999))).verdict == "reject"  # the override wins


def test_bad_frame_gives_an_error_verdict_not_an_exception(trained: tuple[Path, Path]) -> None:
    _, repo = trained
    insp = TabletDefect(TabletDefect.Params(model="tex"), _ctx(repo))
    r = insp.inspect(_frame(np.full((64, 64), 77, np.uint8)))
    assert r.verdict == "error" and r.scores == {}
    assert r.detail["kind"] and r.detail["error"] and r.reason_code() == r.detail["kind"]


def test_validate_static_and_tampered_artifact_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, repo = trained
    copy = tmp_path / "models"
    shutil.copytree(repo, copy)
    cfg = Config(models_dir=str(copy))
    TabletDefect.validate_static(TabletDefect.Params(model="tex"), cfg)  # fine as trained
    with pytest.raises(ConfigError, match="not found"):
        TabletDefect.validate_static(TabletDefect.Params(model="nope"), cfg)

    art = copy / "tex" / "1" / "pipeline.skops"
    blob = bytearray(art.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    art.write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="refusing to load a modified model"):
        TabletDefect.validate_static(TabletDefect.Params(model="tex"), cfg)
    with pytest.raises(ModelIntegrityError):
        TabletDefect(TabletDefect.Params(model="tex"), _ctx(copy))


def test_artifact_with_untrusted_types_is_refused_even_with_a_matching_hash(trained, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from inspector.modelrepo import Manifest, write_model_dir

    _, repo = trained
    src = json.loads((repo / "tex" / "1" / "manifest.json").read_text())
    vdir = tmp_path / "models" / "tex" / "1"
    vdir.mkdir(parents=True)
    evil = Pipeline([("f", FunctionTransformer(np.log1p)), ("g", FunctionTransformer(eval))])
    sio.dump(evil, vdir / "pipeline.skops")
    write_model_dir(vdir, Manifest(name="tex", version="1", task="tablet_defect", artifacts={"pipeline.skops": {}},
                                   input=src["input"]))
    with pytest.raises(ModelIntegrityError, match="cannot be loaded safely"):
        TabletDefect(TabletDefect.Params(model="tex"), _ctx(tmp_path / "models"))


def test_reload_verifies_before_swapping(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, repo = trained
    copy = tmp_path / "models"
    shutil.copytree(repo, copy)
    insp = TabletDefect(TabletDefect.Params(model="tex"), _ctx(copy))
    with pytest.raises(ModelNotFoundError):
        insp.reload("2")
    assert insp.model_info().version == "1"

    v2 = copy / "tex" / "2"
    shutil.copytree(copy / "tex" / "1", v2)
    m = json.loads((v2 / "manifest.json").read_text())
    m["version"] = "2"
    (v2 / "manifest.json").write_text(json.dumps(m))
    (v2 / "pipeline.skops").write_bytes(b"not a model")  # tampered: the reload must refuse it
    with pytest.raises(ModelIntegrityError):
        insp.reload("2")
    assert insp.model_info().version == "1"
    assert insp.inspect(_frame(_texture("streaks", 996))).verdict == "reject"  # still serving v1

    shutil.copy(copy / "tex" / "1" / "pipeline.skops", v2 / "pipeline.skops")
    assert insp.reload("2").version == "2"


def test_train_refuses_to_overwrite_without_force(trained: tuple[Path, Path], capsys) -> None:
    from inspector.cli import main

    data, repo = trained
    rc = main(["train", "texture", str(data), "--out", str(repo / "tex" / "1"), "--roi", "none", "--no-progress"])
    assert rc == 1 and "pass --force" in capsys.readouterr().err
