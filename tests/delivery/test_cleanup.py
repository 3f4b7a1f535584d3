"""Stale files are cleaned after their age, never while in use."""
import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.delivery.cleanup import clean_stale
from apps.delivery.models import DeliveryBatch, DeliveryJob, DeliveryTarget, Upload

pytestmark = pytest.mark.django_db


def test_expired_uploads_and_old_unused_zips_go_the_rest_stays(settings, tmp_path, uploader, retrieved):
    settings.UPLOADS_DIR, settings.DELIVERY_ZIP_DIR = tmp_path / "uploads", tmp_path / "zips"
    settings.DELIVERY_ZIP_CLEANUP_HOURS = 1
    settings.UPLOADS_DIR.mkdir(), settings.DELIVERY_ZIP_DIR.mkdir()
    stale = Upload.objects.create(created_by=uploader, filename="a.zip", length=10,
                                  expires_at=timezone.now() - timedelta(minutes=1))
    fresh = Upload.objects.create(created_by=uploader, filename="b.zip", length=10)
    done = Upload.objects.create(created_by=uploader, filename="c.zip", length=10, state="unpacked",
                                 expires_at=timezone.now() - timedelta(days=3))
    for upload in (stale, fresh):
        upload.data_path.write_bytes(b"12345")
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(tmp_path))
    job = DeliveryJob.for_retrieval(retrieved, target, start=False, batch_size=3)
    old_unused, old_in_use, new = (settings.DELIVERY_ZIP_DIR / n for n in ("old.zip", "in-use.zip", "new.zip"))
    for path in (old_unused, old_in_use, new):
        path.write_bytes(b"PK")
    for path in (old_unused, old_in_use):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    DeliveryBatch.objects.create(job=job, number=1, lines=[2, 3, 4], zip_path=str(old_in_use))  # pending: in use

    assert clean_stale() == {"uploads": 1, "zips": 1}
    assert not stale.data_path.exists() and not Upload.objects.filter(pk=stale.pk).exists()
    assert fresh.data_path.exists() and Upload.objects.filter(pk=done.pk).exists()
    assert not old_unused.exists() and old_in_use.exists() and new.exists()
