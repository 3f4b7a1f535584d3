"""What sending an upload's photos does (registered with the runner in apps.py): the checks when the send
runs, the send itself (sending.py), and what the outcome means for the sender and the files."""
from pathlib import Path

from apps.audit import record
from apps.catalog.filing import catalog_files
from apps.jobs.errors import ItemFailed
from apps.photos.sending import send_instances


def send_photos(item, ctx) -> None:
    upload = item.job
    if upload.dicom_server is None:
        item.result["code"] = "PACS_REJECTED"
        raise ItemFailed(f"Server {upload.server_name} was deleted; the photos wait in {upload.folder}.")
    # Checked again when the send runs: a retry may come after the sender lost access to the server.
    if not upload.dicom_server.may(upload.created_by, "send"):
        item.result["code"] = "PACS_REJECTED"
        raise ItemFailed(upload.dicom_server.refusal("send"))
    todo = [i for i in item.instances() if i["status"] != "success"]
    missing = [i for i in todo if not Path(i["path"]).is_file()]
    if missing:
        item.result["code"] = "PACS_REJECTED"
        raise ItemFailed(f"{len(missing)} DICOM file(s) of this upload are gone (first: {missing[0]['path']}).")
    try:
        send_instances(upload, todo, ctx, item.result)
    except ItemFailed:
        item.result["code"] = "PACS_REJECTED"
        raise
    failed = [i for i in item.instances() if i["status"] != "success"]
    if failed:
        item.result["code"] = "PACS_REJECTED"
        raise ItemFailed(f"{upload.server_name} refused {len(failed)} of {len(item.instances())} photos; "
                         f"photo {failed[0]['index']}: {failed[0]['message']}")
    item.result.pop("code", None)
    record(upload.created_by, "photos.stored", upload, patient_id=upload.patient_id, server=upload.server_name,
           instances=[i["sopInstanceUID"] for i in item.instances()])
    if not upload.keep_files:
        upload.remove_files()
    else:
        catalog_files([i["path"] for i in item.instances()], source="photo", job=upload)
