"""How much a piece of code made this process's resident memory peak: /proc/self/clear_refs resets the
peak (VmHWM) to the current size, so the growth is the code's own, whatever the test process held before."""
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def status_mb(field: str, pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@dataclass
class Growth:
    mb: float = 0.0


@contextmanager
def peak_growth_mb():
    """Yields a Growth whose `mb` is, once the block ends, the peak RSS growth (MB) within it."""
    Path("/proc/self/clear_refs").write_text("5")
    before = status_mb("VmRSS")
    growth = Growth()
    yield growth
    growth.mb = status_mb("VmHWM") - before
