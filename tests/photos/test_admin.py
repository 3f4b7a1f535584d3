"""The admin's photo uploads: the list and the page of an upload, and "Retry failed items" sending a failed
upload through the workers' runner once the PACS is back."""
import pytest

from apps.jobs.runner import run_item
from apps.photos.models import PhotoSend, PhotoUpload
from apps.servers.models import DicomServer
from tests.photos.conftest import post_photos

pytestmark = [pytest.mark.django_db, pytest.mark.orthanc]


def test_a_failed_upload_is_listed_and_retried_from_the_admin(api, admin_client_logged_in, destination, empty_orthanc,
                                                              rotated_jpeg, broker, django_capture_on_commit_callbacks):
    DicomServer.objects.filter(pk=destination.pk).update(ae_title="NOT_SPARE")
    body = post_photos(api, [rotated_jpeg]).json()
    upload = PhotoUpload.objects.get(pk=body["upload"])

    listing = admin_client_logged_in.get("/admin/photos/photoupload/")
    assert listing.status_code == 200 and b"Photo upload #%d" % upload.pk in listing.content
    page = admin_client_logged_in.get(f"/admin/photos/photoupload/{upload.pk}/change/")
    assert page.status_code == 200 and body["instances"][0]["sopInstanceUID"].encode() in page.content

    DicomServer.objects.filter(pk=destination.pk).update(ae_title=empty_orthanc.aet)
    with django_capture_on_commit_callbacks(execute=True):  # the queue is written once the request commits
        retried = admin_client_logged_in.post("/admin/photos/photoupload/", {
            "action": "retry_failed_items", "_selected_action": [upload.pk]})
    assert retried.status_code == 302
    item = PhotoSend.objects.get(job=upload)
    assert item.status == "pending" and broker.queue_size() == 1  # on its way to a worker
    assert run_item(PhotoSend._meta.label, item.pk) == "succeeded"  # what the worker runs
    assert empty_orthanc.instances() == {body["instances"][0]["sopInstanceUID"]}
    upload.refresh_from_db()
    assert upload.status == "succeeded"
