"""Per-server association limit across every worker process and machine, kept in the database.

acquire() takes a free (or expired) AssociationSlot with a compare-and-set UPDATE, so two workers can
never hold the same slot; the holder renews the expiry from its heartbeat; release() frees it."""
import random
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.dicom.errors import DicomTimeout
from apps.jobs.errors import ItemCanceled
from apps.jobs.models import AssociationSlot


def lease() -> timedelta:
    return timedelta(seconds=settings.JOB_LEASE_SECONDS)


def acquire(server, owner: str, *, timeout: float, should_stop=lambda: False) -> str:
    """Block until one of server.max_associations slots is ours; returns the holder token for release().
    Raises DicomTimeout (retriable) if none frees up in `timeout` seconds, ItemCanceled if asked to stop."""
    limit = server.max_associations
    if AssociationSlot.objects.filter(server=server, number__lt=limit).count() < limit:
        AssociationSlot.objects.bulk_create(
            [AssociationSlot(server=server, number=n) for n in range(limit)], ignore_conflicts=True)
    token = f"{owner}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    while True:
        now = timezone.now()
        free = AssociationSlot.objects.filter(Q(holder="") | Q(expires_at__lt=now), server=server, number__lt=limit)
        for slot in free:
            taken = AssociationSlot.objects.filter(pk=slot.pk, holder=slot.holder, expires_at=slot.expires_at).update(
                holder=token, expires_at=now + lease())
            if taken:
                return token
        if should_stop():
            raise ItemCanceled()
        if time.monotonic() > deadline:
            raise DicomTimeout(f"All {limit} associations to {server.name} stayed busy for {timeout:.0f} s.")
        time.sleep(0.1 + random.random() * 0.2)  # jitter: waiting workers do not retry in lockstep


def renew(tokens) -> None:
    if tokens:
        AssociationSlot.objects.filter(holder__in=list(tokens)).update(expires_at=timezone.now() + lease())


def release(token: str) -> None:
    AssociationSlot.objects.filter(holder=token).update(holder="", expires_at=None)
