"""On-disk model repository: ``<repo>/<model-name>/<version>/manifest.json`` + artifact files.

Like Triton's model repository, but every artifact is listed in the manifest with its sha256, and
nothing is loaded before all hashes match (a tampered or truncated file is refused).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import ModelIntegrityError, ModelNotFoundError

MANIFEST = "manifest.json"
SCHEMA = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Manifest:
    name: str
    version: str
    task: str
    artifacts: dict[str, dict[str, Any]]  # file name -> {"sha256": ..., "bytes": ...}
    classes: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    schema: int = SCHEMA

    @property
    def sha256(self) -> str:
        """Identity of the model: sha256 of the primary artifact (the first listed)."""
        first = next(iter(self.artifacts.values()))
        return first["sha256"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "created": self.created,
            "artifacts": self.artifacts,
            "classes": self.classes,
            "thresholds": self.thresholds,
            "input": self.input,
            "preprocessing": self.preprocessing,
            "metrics": self.metrics,
            "training": self.training,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        try:
            if int(d.get("schema", 0)) != SCHEMA:
                raise ModelIntegrityError(f"unsupported manifest schema {d.get('schema')!r}")
            arts = d["artifacts"]
            if not isinstance(arts, dict) or not arts:
                raise ModelIntegrityError("manifest lists no artifacts")
            for fname, meta in arts.items():
                if "/" in fname or "\\" in fname or fname.startswith(".") or fname == MANIFEST:
                    raise ModelIntegrityError(f"manifest artifact name {fname!r} is not a plain file name")
                if not re.fullmatch(r"[0-9a-f]{64}", str(meta.get("sha256", ""))):
                    raise ModelIntegrityError(f"artifact {fname!r} has no valid sha256 in the manifest")
            return cls(
                name=str(d["name"]),
                version=str(d["version"]),
                task=str(d["task"]),
                artifacts=arts,
                classes=list(d.get("classes") or []),
                thresholds=dict(d.get("thresholds") or {}),
                input=dict(d.get("input") or {}),
                preprocessing=dict(d.get("preprocessing") or {}),
                metrics=dict(d.get("metrics") or {}),
                training=dict(d.get("training") or {}),
                extra=dict(d.get("extra") or {}),
                created=str(d.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelIntegrityError(f"malformed manifest: {e!r}") from None


@dataclass
class ModelDir:
    """A verified model version directory."""

    path: Path
    manifest: Manifest

    def artifact(self, name: str) -> Path:
        if name not in self.manifest.artifacts:
            raise ModelIntegrityError(f"{name!r} is not an artifact of model {self.manifest.name}")
        return self.path / name


def load_model_dir(path: str | Path) -> ModelDir:
    """Read a manifest and verify the sha256 of every artifact it lists. Raises ModelIntegrityError."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelNotFoundError(f"no {MANIFEST} in {path}")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelIntegrityError(f"unreadable manifest {mpath}: {e}") from None
    if not isinstance(data, dict):
        raise ModelIntegrityError(f"manifest {mpath} is not a JSON object")
    manifest = Manifest.from_dict(data)
    for fname, meta in manifest.artifacts.items():
        f = path / fname
        if not f.is_file():
            raise ModelIntegrityError(f"model {manifest.name}/{manifest.version}: artifact {fname} is missing")
        actual = sha256_file(f)
        if actual != meta["sha256"]:
            raise ModelIntegrityError(
                f"model {manifest.name}/{manifest.version}: sha256 of {fname} is {actual[:12]}…, "
                f"manifest says {meta['sha256'][:12]}… — refusing to load a modified model"
            )
    return ModelDir(path=path, manifest=manifest)


def _version_key(v: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._-]", v))


def versions(repo: str | Path, name: str) -> list[str]:
    d = Path(repo) / name
    if not d.is_dir():
        return []
    return sorted((p.name for p in d.iterdir() if (p / MANIFEST).is_file()), key=_version_key)


def resolve(repo: str | Path, name: str, version: str | None = None) -> ModelDir:
    """Find ``name`` (latest version unless given) in the repository and verify it."""
    if not _NAME_RE.match(name) or (version is not None and not _NAME_RE.match(version)):
        raise ModelNotFoundError(f"invalid model name/version {name!r}/{version!r}")
    vs = versions(repo, name)
    if not vs:
        raise ModelNotFoundError(f"model {name!r} not found in repository {repo}")
    if version is None:
        version = vs[-1]
    elif version not in vs:
        raise ModelNotFoundError(f"model {name!r} has no version {version!r} (has: {', '.join(vs)})")
    return load_model_dir(Path(repo) / name / version)


def write_model_dir(path: str | Path, manifest: Manifest) -> ModelDir:
    """Hash the artifacts already written in ``path`` and write the manifest last (atomically)."""
    path = Path(path)
    for fname in list(manifest.artifacts):
        f = path / fname
        manifest.artifacts[fname] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    if not manifest.created:
        manifest.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path / MANIFEST)
    return load_model_dir(path)
