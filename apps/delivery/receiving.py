"""The receiving end's worker task: unpack a complete zip upload (a django-q2 task queued by
Upload.finish), so a large or hostile zip never holds a web thread. Its outcome is on the upload
(state "unpacked", or "failed" with the reason), which the sender polls with GET.

While an upload is "unpacking", its `expires_at` is the lease of the worker that took it: a second
message for it (the hourly sweep re-queues one whose lease passed: its worker died) finds it taken.
Unpacking again after a crash is harmless: files already placed have the same bytes."""
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.audit import record
from apps.delivery.models import Upload

log = logging.getLogger("apps.delivery")


def lease_seconds() -> int:
    return int(settings.Q_CLUSTER.get("timeout") or 3600)  # django-q stops a task after this long anyway


def unpack_upload(upload_id: str) -> str:
    now = timezone.now()
    taken = Upload.objects.filter(pk=upload_id, state=Upload.State.UNPACKING, expires_at__lte=now).update(
        expires_at=now + timedelta(seconds=lease_seconds()))
    if not taken:  # terminated, done, or another worker has it
        return "not waiting"
    upload = Upload.objects.select_related("created_by").get(pk=upload_id)
    upload.settle()
    record(upload.created_by, "upload.unpacked", upload, filename=upload.filename, state=upload.state,
           files=upload.files, error=upload.error)
    log.info("upload %s: %s, %d files", upload.id, upload.state, upload.files)
    return upload.state
