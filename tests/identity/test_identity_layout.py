"""Serving stays apart from offline work: the daemon's identity path never imports TensorFlow or
``inspector.offline`` (checked in a fresh interpreter, so other tests' imports cannot hide a leak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVING_MODULES = [
    "inspector.identity",
    "inspector.identity.tiling",
    "inspector.identity.runtime",
    "inspector.identity.gradcam",
    "inspector.inspections",
    "inspector.inspections.excipient_identity",
]
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "inspector.offline")


def _imported_after(modules: list[str]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_imports_no_tensorflow_and_no_offline_code():
    mods = _imported_after(SERVING_MODULES)
    assert "inspector.inspections.excipient_identity" in mods  # the check really imported it
    leaked = [m for m in mods if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == [], f"serving path imported offline modules: {leaked[:10]}"


def test_offline_package_is_where_training_lives():
    mods = _imported_after(["inspector.offline.identity.train"])
    assert "inspector.offline.identity.train" in mods
    assert "tensorflow" not in mods  # TF is imported lazily, inside the training functions


def _module_imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` imported by the file at ``path`` (top level and inside functions),
    ignoring ``if TYPE_CHECKING:`` blocks (never executed)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n[len(package) + 1:].split(".")[0] for n in names if n.startswith(package + "."))
    return found


def test_offline_identity_has_no_import_cycle():
    pkg_dir = ROOT / "inspector" / "offline" / "identity"
    mods = {p.stem for p in pkg_dir.glob("*.py") if p.stem != "__init__"}
    graph = {m: _module_imports(pkg_dir / f"{m}.py", "inspector.offline.identity") & mods - {m} for m in mods}
    assert graph["train"] and "metrics" in graph["evaluate"]  # the parser sees real edges
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, f"import cycle: {' -> '.join(path + [m, n])}"
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
