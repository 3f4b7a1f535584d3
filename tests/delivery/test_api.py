"""The delivery API: targets by name with a write-only token, deliveries of your own retrievals,
other users' deliveries invisible, permissions, cancel and retry."""
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.delivery.models import DeliveryJob, DeliveryTarget
from tests.delivery.conftest import run_released

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("trusted_loopback")]


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames, content_type__app_label="delivery"))


@pytest.fixture
def deliverer(api, user):
    grant(user, "view_deliverytarget", "add_deliverytarget", "change_deliverytarget", "view_deliveryjob",
          "add_deliveryjob", "change_deliveryjob")
    user.is_staff = True  # creating targets is a staff permission
    user.save()
    return api


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_targets_by_name_never_return_the_token(deliverer):
    created = deliverer.post("/api/delivery-targets/", {"name": "FAR", "kind": "portal", "url": "http://127.0.0.1:9/",
                                                        "token": "s3cret-token"}, format="json")
    assert created.status_code == 201, created.data
    assert "token" not in created.data and created.data["has_token"] is True
    shown = deliverer.get("/api/delivery-targets/FAR")
    assert shown.status_code == 200 and "s3cret-token" not in shown.content.decode()
    changed = deliverer.patch("/api/delivery-targets/FAR/", {"description": "site B"}, format="json")
    assert changed.status_code == 200 and DeliveryTarget.objects.get().token == "s3cret-token"
    assert AuditEvent.objects.filter(action="delivery_target.created").exists()
    assert "s3cret-token" not in str(list(AuditEvent.objects.values_list("details", flat=True)))


@pytest.mark.parametrize("body, problem", [
    ({"name": "FAR", "kind": "portal", "url": "http://127.0.0.1:9/"}, "URL and an API token"),
    ({"name": "PACS", "kind": "dicom"}, "configured DICOM servers"),
    ({"name": "BOX", "kind": "folder", "path": "/etc"}, "not inside an allowed delivery folder"),
    ({"name": "BOX", "kind": "folder", "path": "/tmp/../etc"}, "not inside an allowed delivery folder"),
    ({"name": "bad name!", "kind": "folder", "path": "/tmp"}, "letters, digits"),
])
def test_a_bad_target_is_refused_with_the_reason(deliverer, body, problem):
    response = deliverer.post("/api/delivery-targets/", body, format="json")
    assert response.status_code == 400 and problem in str(response.data)


def test_a_folder_target_cannot_escape_its_root_by_a_symlink(deliverer, settings, tmp_path):
    settings.DELIVERY_ROOTS = [tmp_path / "root"]
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to("/etc")
    response = deliverer.post("/api/delivery-targets/", {"name": "BOX", "kind": "folder",
                                                         "path": str(tmp_path / "root" / "link")}, format="json")
    assert response.status_code == 400 and "not inside" in str(response.data)
    ok = deliverer.post("/api/delivery-targets/", {"name": "BOX", "kind": "folder",
                                                   "path": str(tmp_path / "root")}, format="json")
    assert ok.status_code == 201


def test_without_permission_or_login_nothing_is_created(retrieved, receiving, uploader, django_user_model):
    DeliveryTarget.objects.create(name="FAR", kind="portal", url=receiving.url, token=uploader.token)
    api = client_for(django_user_model.objects.create_user(username="nobody", password="nobody-pass-1"))
    assert api.get("/api/deliveries/").status_code == 403
    assert api.post("/api/delivery-targets/", {"name": "X", "kind": "folder", "path": "/tmp"}).status_code == 403
    assert api.post("/api/deliveries/", {"retrieval": retrieved.pk, "target": "FAR"}, format="json").status_code == 403
    assert APIClient().get("/api/deliveries/").status_code == 401
    assert APIClient().get("/api/delivery-targets/").status_code == 401
    assert not DeliveryJob.objects.exists()


def test_post_a_delivery_then_follow_its_batches(deliverer, retrieved, receiving, uploader, user):
    DeliveryTarget.objects.create(name="FAR", kind="portal", url=receiving.url, token=uploader.token)
    response = deliverer.post("/api/deliveries/", {"retrieval": retrieved.pk, "target": "FAR", "mode": "zip",
                                                   "batch_size": 4, "keep_zip": False, "clear": True}, format="json")
    assert response.status_code == 201, response.data
    body = response.data
    assert body["target"] == "FAR" and body["mode"] == "zip" and body["batch_size"] == 4
    assert [b["cases"] for b in body["items"]] == [4, 2] and body["progress"]["batches"] == 2
    run_released(DeliveryJob.objects.get(pk=body["id"]))
    shown = deliverer.get(f"/api/deliveries/{body['id']}").data
    assert shown["status"] == "succeeded" and shown["progress"]["cases"] == 6 and shown["progress"]["files"] == 30
    batch = shown["items"][0]
    assert batch["files"] == 20 and batch["bytes"] > 0 and batch["sent_bytes"] == batch["bytes"]
    assert batch["result"]["lines"] == [2, 3, 4, 5] and batch["result"]["verified_bytes"] == batch["bytes"]


def test_unknown_or_foreign_retrievals_and_other_users_deliveries(deliverer, retrieved, receiving, uploader, user,
                                                                  django_user_model):
    DeliveryTarget.objects.create(name="FAR", kind="portal", url=receiving.url, token=uploader.token)
    assert deliverer.post("/api/deliveries/", {"retrieval": 999, "target": "FAR"}, format="json").status_code == 400
    other = django_user_model.objects.create_user(username="other", password="other-pass-123")
    grant(other, "add_deliveryjob", "view_deliveryjob", "change_deliveryjob")
    theirs = client_for(other)
    refused = theirs.post("/api/deliveries/", {"retrieval": retrieved.pk, "target": "FAR"}, format="json")
    assert refused.status_code == 400 and "no retrieval job" in str(refused.data)
    mine = deliverer.post("/api/deliveries/", {"retrieval": retrieved.pk, "target": "FAR"}, format="json").data
    assert theirs.get(f"/api/deliveries/{mine['id']}/").status_code == 404
    assert theirs.post(f"/api/deliveries/{mine['id']}/cancel/").status_code == 404
    assert theirs.get("/api/deliveries/").data == []
    assert len(deliverer.get("/api/deliveries/").data) == 1


def test_cancel_then_retry(deliverer, retrieved, user, settings, tmp_path):
    settings.DELIVERY_ROOTS = [tmp_path]
    DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(tmp_path / "gone"))
    job_id = deliverer.post("/api/deliveries/", {"retrieval": retrieved.pk, "target": "BOX", "mode": "direct",
                                                 "batch_size": 3}, format="json").data["id"]
    canceled = deliverer.post(f"/api/deliveries/{job_id}/cancel/").data
    assert canceled["status"] == "canceled" and {b["status"] for b in canceled["items"]} == {"canceled"}
    job = DeliveryJob.objects.get(pk=job_id)
    job.items.update(status="failed", error="test")
    retried = deliverer.post(f"/api/deliveries/{job_id}/retry/").data
    assert {b["status"] for b in retried["items"]} == {"pending"}
    run_released(job)
    assert job.status == "succeeded" and len(list((tmp_path / "gone").rglob("*.dcm"))) == 30


def test_a_pacs_target_needs_send_access_to_its_server(deliverer, retrieved, user):
    from apps.servers.models import DicomServer

    server = DicomServer.objects.create(name="CLOSED", ae_title="CLOSED", host="127.0.0.1", port=1,
                                        open_to_everyone=False)
    DeliveryTarget.objects.create(name="PACS", kind="dicom", server=server)
    refused = deliverer.post("/api/deliveries/", {"retrieval": retrieved.pk, "target": "PACS"}, format="json")
    assert refused.status_code == 403 and "may not send to server 'CLOSED'" in str(refused.data)
    assert not DeliveryJob.objects.exists()
    # Started while allowed, refused when the batch runs: the files stay.
    job = DeliveryJob.for_retrieval(retrieved, DeliveryTarget.objects.get(name="PACS"), user=user, batch_size=6)
    run_released(job)
    assert job.status == "failed" and "may not send to server 'CLOSED'" in job.items.get().error
    assert len(list(retrieved.source.rglob("*.dcm"))) == 30
