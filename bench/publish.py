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


def file_system(path: str | os.PathLike) -> str:
    """The file system a folder lies on, as a report names it ("ext4 without a journal on vda"): on ext4
    without a journal every new file passes over the inodes freed in the last minute or more (the kernel's
    recently_deleted()), which decides many of these benchmarks' figures (bench/README.md, "The file
    system"); a journaled ext4 or another file system does not do that."""
    target, found = os.path.realpath(path), ("unknown", "")
    try:
        with open("/proc/self/mountinfo") as mounts:
            for line in mounts:  # the longest mount point holding the folder is where it lies
                fields = line.split()
                point, rest = fields[4], fields[fields.index("-") + 1:]
                if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(found[1]):
                    source = os.path.basename(rest[1])
                    found = (rest[0] if source == rest[0] else f"{rest[0]} on {source}", point)
    except (OSError, ValueError, IndexError):
        return "unknown"
    kind = found[0]
    if kind.startswith("ext4 on "):
        device = kind[len("ext4 on "):]
        journaled = any(name.startswith(f"{device}-") for name in os.listdir("/proc/fs/jbd2")) \
            if os.path.isdir("/proc/fs/jbd2") else False
        kind = f"ext4 {'with' if journaled else 'without'} a journal on {device}"
    return kind


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
