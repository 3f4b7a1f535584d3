"""Stale files: incomplete uploads past their expiry (receiving end) and delivery zips older than
DELIVERY_ZIP_CLEANUP_HOURS (sending end). A zip whose batch is pending or running is in use and kept."""
import logging
import time
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.delivery.models import DeliveryBatch, Upload

log = logging.getLogger("apps.delivery")


def clean_stale() -> dict:
    expired = Upload.objects.filter(state=Upload.State.RECEIVING, expires_at__lte=timezone.now())
    uploads = 0
    for upload in expired:
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
    return {"uploads": uploads, "zips": zips}
