"""Stale files: incomplete uploads past their expiry (receiving end) and delivery zips older than
DELIVERY_ZIP_CLEANUP_HOURS (sending end). A zip whose batch is pending or running is in use and kept.
Zips whose unpacking worker died (its lease passed an hour ago) are queued again, and the scratch
folders such a worker left in the received folders are removed."""
import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.delivery.models import DeliveryBatch, Upload
from apps.delivery.receiving import lease_seconds

log = logging.getLogger("apps.delivery")


def expired_uploads():
    """Uploads never completed whose expiry passed (retention lists and removes them too)."""
    return Upload.objects.filter(state=Upload.State.RECEIVING, expires_at__lte=timezone.now()).order_by("pk")


def clean_stale() -> dict:
    uploads = 0
    for upload in expired_uploads():
        upload.discard()
        uploads += 1
    in_use = set(DeliveryBatch.objects.filter(status__in=["pending", "running"]).exclude(zip_path="")
                 .values_list("zip_path", flat=True))
    cutoff = time.time() - settings.DELIVERY_ZIP_CLEANUP_HOURS * 3600
    zips = 0
    for path in Path(settings.DELIVERY_ZIP_DIR).glob("*.zip*"):
        if str(path) not in in_use and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            zips += 1
    if uploads or zips:
        log.info("cleaned %d expired uploads and %d old delivery zips", uploads, zips)
    resume_unpacking()
    return {"uploads": uploads, "zips": zips}


def resume_unpacking() -> int:
    """Queue again the zips left "unpacking" by a worker that died; remove the scratch folders left."""
    stalled = list(Upload.objects.filter(state=Upload.State.UNPACKING,
                                         expires_at__lte=timezone.now() - timedelta(hours=1)))
    for upload in stalled:
        upload.queue_unpacking()
    cutoff = time.time() - lease_seconds() - 3600
    for scratch in Path(settings.DOWNLOADS_DIR).glob("received/*/.incoming-*"):
        if scratch.is_dir() and not scratch.is_symlink() and scratch.stat().st_mtime < cutoff:
            shutil.rmtree(scratch, ignore_errors=True)
    if stalled:
        log.warning("queued %d uploads again whose unpacking stopped (a worker died)", len(stalled))
    return len(stalled)
