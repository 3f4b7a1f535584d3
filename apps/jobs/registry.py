"""Which function does an item's work. Each app registers its item model's processor in its
AppConfig.ready() (`register(XxxItem, work.process_xxx)`); the runner looks it up by the model's label.
The processor is `fn(item, ctx)`: it does the work, raises ItemFailed/ItemTimedOut/DicomError to fail, is
idempotent (after a crash the item runs again and must finish without duplicates), and puts its outputs
in item.result. This module imports no model, so a model never has to import its app's worker code."""
from collections.abc import Callable

PROCESSORS: dict[str, Callable] = {}


def register(model, processor: Callable) -> None:
    """Make `processor(item, ctx)` the work of `model`'s items (one per model; registering again replaces)."""
    PROCESSORS[model._meta.label] = processor


def processor_for(model) -> Callable:
    try:
        return PROCESSORS[model._meta.label]
    except KeyError:
        raise LookupError(f"No processor is registered for {model._meta.label}: its app's ready() must call "
                          "apps.jobs.registry.register()") from None


# "May this item start now?" checks of the rooms above the runner (servers: a paused server, a closed
# window). Each is `check(item) -> Hold | None` (apps/jobs/holds.py); the runner asks them after it
# claimed an item and before the work starts, so the runner never imports those rooms.
CHECKS: list[Callable] = []


def add_check(check: Callable) -> None:
    """Make the runner ask `check(item)` before it starts an item (registering the same function again is a
    no-op, so a ready() that runs twice adds it once)."""
    if check not in CHECKS:
        CHECKS.append(check)
