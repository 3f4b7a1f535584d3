"""Workers stuck in one item, for /healthz. An item in `running` is reported when
  - its heartbeat is older than the lease (JOB_LEASE_SECONDS): its worker stopped beating (killed, or its
    process frozen) and the item is not reclaimed yet; or
  - it has been running longer than JOB_STUCK_SECONDS although its heartbeat is fresh: the worker is
    alive but blocked in that one item (a FIFO opened as a file, a call with no timeout); its heartbeat
    thread beats on, so only the time tells.
Both are read with the (status, heartbeat_at) lease index every item table has; no patient data is named."""
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.jobs.runner import item_models


def stuck_items(limit: int = 5) -> list[str]:
    """One line per stuck item (at most `limit`): which worker, which item, and why."""
    now = timezone.now()
    lease = timedelta(seconds=settings.JOB_LEASE_SECONDS)
    stuck = Q(heartbeat_at__lt=now - lease)
    if settings.JOB_STUCK_SECONDS:
        stuck |= Q(started_at__lt=now - timedelta(seconds=settings.JOB_STUCK_SECONDS))
    found = []
    for model in item_models():
        rows = model.objects.filter(stuck, status="running").values("pk", "worker", "heartbeat_at", "started_at")
        for row in rows.order_by("started_at")[:limit - len(found)]:
            found.append(_describe(model, row, now, lease))
        if len(found) >= limit:
            break
    return found


def _describe(model, row, now, lease) -> str:
    where = f"worker {row['worker'] or '?'} in {model._meta.label} {row['pk']}"
    beat = row["heartbeat_at"]
    if beat is None or now - beat > lease:
        silent = f"for {(now - beat).total_seconds():.0f} s " if beat else ""
        return f"{where}: no heartbeat {silent}(lease {lease.total_seconds():.0f} s)"
    return (f"{where}: running for {(now - row['started_at']).total_seconds():.0f} s with its heartbeat alive "
            f"(JOB_STUCK_SECONDS {settings.JOB_STUCK_SECONDS})")
