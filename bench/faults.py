"""Recovery time per fault kind: SIGKILL each kind of daemon process N times on the simulated GenTL
camera at 20 frames/s and print the percentiles of kill → first inspected frame acquired after the
kill, plus the frame accounting. A benchmark (printed figures), not a timed test.

    python bench/faults.py [--kills 20] [--kinds acquisition,worker,...] [--out out/faults.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from fault_harness import FAULT_KINDS, Line, percentile  # noqa: E402
from tqdm import tqdm  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--kinds", default=",".join(FAULT_KINDS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="also write the table as Markdown here")
    a = ap.parse_args()
    rows = []
    for kind in a.kinds.split(","):
        with tempfile.TemporaryDirectory(prefix="inspector-faults-") as tmp, Line(Path(tmp), workers=a.workers) as line:
            rec = [line.inject(kind) for _ in tqdm(range(a.kills), desc=kind, unit="kill")]
            code, _ = line.stop()
            acquired, inspected, dropped, lost = line.counts()
            ids = sorted(f["frame_id"] for f in line.frames())
            complete = ids == list(range(len(ids))) and len(ids) == acquired
        t = [r.resume_s for r in rec]
        blind = sum(1 for r in rec if not r.not_ready)
        rows.append((kind, a.kills, percentile(t, 50), percentile(t, 90), percentile(t, 99), max(t), blind,
                     acquired, inspected, dropped, lost, complete and code == 0))
    head = ("| fault (SIGKILL) | kills | resume p50 s | p90 s | p99 s | max s | ready claimed during outage | "
            "acquired | inspected | dropped | lost | audit complete |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0 if all(r[-1] and r[6] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
