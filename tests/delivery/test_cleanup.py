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


def test_a_zip_whose_unpacking_worker_died_is_unpacked_again_once(settings, tmp_path, uploader, broker,
                                                                   django_capture_on_commit_callbacks):
    import io
    import zipfile

    from django_q.signing import SignedPackage

    from apps.delivery.cleanup import resume_unpacking
    from apps.delivery.receiving import unpack_upload

    settings.UPLOADS_DIR, settings.DOWNLOADS_DIR = tmp_path / "uploads", tmp_path / "downloads"
    settings.UPLOADS_DIR.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("LK/a_1_CT/1.dcm", b"one")
        bundle.writestr("LK/a_1_CT/2.dcm", b"two")
    upload = Upload.objects.create(created_by=uploader, filename="b.zip", length=len(buffer.getvalue()),
                                   state="unpacking", expires_at=timezone.now() + timedelta(minutes=30))
    upload.data_path.write_bytes(buffer.getvalue())
    (upload.destination / "LK/a_1_CT").mkdir(parents=True)
    (upload.destination / "LK/a_1_CT/1.dcm").write_bytes(b"one")  # the dead worker placed one file
    leftover = upload.destination / ".incoming-dead"
    leftover.mkdir()
    os.utime(leftover, (0, 0))

    assert unpack_upload(str(upload.pk)) == "not waiting", "a worker holds it (its lease runs)"
    assert resume_unpacking() == 0 and broker.queue_size() == 0
    Upload.objects.filter(pk=upload.pk).update(expires_at=timezone.now() - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_unpacking() == 1 and not leftover.exists()
    tasks = [SignedPackage.loads(m.payload) for m in broker.connection.order_by("id")]
    assert [t["func"] for t in tasks] == ["apps.delivery.receiving.unpack_upload"]
    assert unpack_upload(*tasks[0]["args"]) == "unpacked"
    assert unpack_upload(*tasks[0]["args"]) == "not waiting"
    upload.refresh_from_db()
    assert upload.files == 2 and "1 of the files were already here" in upload.error
    assert (upload.destination / "LK/a_1_CT/2.dcm").read_bytes() == b"two"
