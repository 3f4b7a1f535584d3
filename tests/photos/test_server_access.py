"""Who may send photos where: a server closed to everyone but its send groups refuses other senders (403
with the reason, nothing sent), lists only for its group on the page, and a retry after access was
withdrawn fails with the same reason."""
import pytest
from django.contrib.auth.models import Group

from apps.jobs.runner import run_inline
from apps.photos.models import PhotoSend, PhotoUpload
from apps.servers.models import DicomServer
from tests.photos.conftest import post_photos

pytestmark = [pytest.mark.django_db, pytest.mark.orthanc]


@pytest.fixture
def ward_only(destination):
    ward = Group.objects.create(name="ward 7")
    DicomServer.objects.filter(pk=destination.pk).update(open_to_everyone=False)
    destination.send_groups.add(ward)
    return ward


def test_a_closed_server_refuses_senders_outside_its_send_groups(api, user, client, ward_only, empty_orthanc,
                                                                rotated_jpeg):
    refused = post_photos(api, [rotated_jpeg])  # the configured destination
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert "You may not send to server 'PHOTOPACS'" in refused.json()["message"]
    assert api.post("/api/pacs/echo", format="json").status_code == 403
    client.force_login(user)
    assert b'"servers": []' in client.get("/photos/").content  # nothing to pick on the page
    assert empty_orthanc.instances() == set() and not PhotoUpload.objects.exists()

    user.groups.add(ward_only)
    assert post_photos(api, [rotated_jpeg]).status_code == 200
    assert b'"name": "PHOTOPACS"' in client.get("/photos/").content


def test_a_retry_after_access_was_withdrawn_fails_with_the_reason(api, user, ward_only, destination, rotated_jpeg):
    user.groups.add(ward_only)
    DicomServer.objects.filter(pk=destination.pk).update(ae_title="NOT_SPARE")
    body = post_photos(api, [rotated_jpeg]).json()
    assert body["code"] == "PACS_REJECTED"
    user.groups.remove(ward_only)
    DicomServer.objects.filter(pk=destination.pk).update(ae_title=destination.ae_title)
    upload = PhotoUpload.objects.get(pk=body["upload"])
    PhotoSend.objects.filter(job=upload).update(status="pending")
    item = run_inline(upload).items.get()
    assert item.status == "failed" and "You may not send to server 'PHOTOPACS'" in item.error
