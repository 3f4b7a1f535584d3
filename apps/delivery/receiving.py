"""The receiving end's worker task: unpack a complete zip upload (a django-q2 task queued by
Upload.finish), so a large or hostile zip never holds a web thread. Its outcome is on the upload
(state "unpacked", or "failed" with the reason), which the sender polls with GET."""
import logging

log = logging.getLogger("apps.delivery")


def unpack_upload(upload_id: str) -> str:
    from apps.delivery.models import Upload

    upload = Upload.objects.select_related("created_by").filter(pk=upload_id, state=Upload.State.UNPACKING).first()
    if upload is None:  # terminated meanwhile, or already done
        return "not waiting"
    upload.settle()
    log.info("upload %s: %s, %d files", upload.id, upload.state, upload.files)
    return upload.state
