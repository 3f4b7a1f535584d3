"""The web process decodes at most PHOTO_DECODE_PIXELS at once: a photo waits for room, so two requests
with large photos never hold both decoded pictures in memory together."""
import threading

from apps.photos.budget import PixelBudget


def test_a_photo_waits_until_the_budget_has_room():
    budget = PixelBudget(50_000_000)
    assert budget.acquire(40_000_000, timeout=0)
    assert not budget.acquire(40_000_000, timeout=0)  # a second large photo does not fit beside the first
    assert budget.acquire(10_000_000, timeout=0)  # a small one does
    taken = threading.Event()
    waiting = threading.Thread(target=lambda: budget.acquire(40_000_000) and taken.set())
    waiting.start()
    budget.release(40_000_000)
    waiting.join(timeout=10)
    assert taken.is_set() and budget.taken == 50_000_000


def test_a_photo_larger_than_the_budget_still_runs_alone():
    budget = PixelBudget(10)
    with budget.held(25):
        assert budget.taken == 10 and not budget.acquire(1, timeout=0)
    assert budget.taken == 0
