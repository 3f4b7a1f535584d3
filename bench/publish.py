"""Where a benchmark's report goes: stdout, and bench/results/<name>-<date>.md (git-ignored)."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def publish(name: str, report: str) -> None:
    print(report)
    out = RESULTS / f"{name}-{dt.date.today():%Y%m%d}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(f"written to bench/results/{out.name}", file=sys.stderr)
