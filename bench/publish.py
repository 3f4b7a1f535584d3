"""What the benchmarks share: a scratch folder that goes away with the run, and where a report goes
(stdout, and bench/results/<name>-<date>.md, git-ignored)."""
from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# The portal as deployed (DEBUG=1 would make Django keep and format every SQL statement), with a key that
# only ever signs a benchmark's throw-away database: without one, DEBUG=0 refuses to start on a fresh clone.
DEPLOYED = {"DEBUG": "0", "SECRET_KEY": "bench-only-" + "x" * 40, "SECURE_SSL": "0"}


def publish(name: str, report: str) -> None:
    print(report)
    out = RESULTS / f"{name}-{dt.date.today():%Y%m%d}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(f"written to bench/results/{out.name}", file=sys.stderr)


def scratch(name: str) -> Path:
    """A fresh folder for one run's datasets, PACS storage and received copies (often gigabytes), removed
    when the run ends however it ends, short of SIGKILL: runs that failed or were interrupted used to
    leave theirs in /tmp, and a few of them filled this machine's disk. BENCH_KEEP_WORK=1 keeps it."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    if not os.environ.get("BENCH_KEEP_WORK"):
        atexit.register(shutil.rmtree, work, True)
    return work
