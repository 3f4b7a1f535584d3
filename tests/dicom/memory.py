"""How much a piece of code made this process's resident memory peak: /proc/self/clear_refs resets the
peak (VmHWM) to the current size, so the growth is the code's own, whatever the test process held before."""
from contextlib import contextmanager
from pathlib import Path


def status_mb(field: str, pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@contextmanager
def peak_growth_mb():
    """Yields a function giving the peak RSS growth (MB) from the start of the block."""
    Path("/proc/self/clear_refs").write_text("5")
    before = status_mb("VmRSS")
    yield lambda: status_mb("VmHWM") - before
