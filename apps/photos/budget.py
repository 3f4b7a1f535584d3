"""How many pixels the web process decodes at once. A photo's pixels are counted from its header before
it is decoded; a request waits here until the process has room for them, so memory is bounded by the
budget (PHOTO_DECODE_PIXELS) whatever number of web threads receive photos at the same time."""
import threading
from contextlib import contextmanager


class PixelBudget:
    def __init__(self, total: int):
        self.total, self.taken = total, 0
        self._changed = threading.Condition()

    def acquire(self, pixels: int, timeout: float | None = None) -> bool:
        """Take `pixels` (at most the whole budget, so one photo larger than it still runs, alone)."""
        pixels = min(pixels, self.total)
        with self._changed:
            if not self._changed.wait_for(lambda: self.taken + pixels <= self.total, timeout=timeout):
                return False
            self.taken += pixels
            return True

    def release(self, pixels: int) -> None:
        with self._changed:
            self.taken -= min(pixels, self.total)
            self._changed.notify_all()

    @contextmanager
    def held(self, pixels: int):
        self.acquire(pixels)
        try:
            yield
        finally:
            self.release(pixels)


_budget: PixelBudget | None = None
_budget_lock = threading.Lock()


def decode_budget() -> PixelBudget:
    """The process's one budget, sized from the settings when first asked for."""
    global _budget
    from django.conf import settings

    with _budget_lock:
        if _budget is None or _budget.total != settings.PHOTO_DECODE_PIXELS:
            if _budget is None or _budget.taken == 0:
                _budget = PixelBudget(settings.PHOTO_DECODE_PIXELS)
        return _budget
