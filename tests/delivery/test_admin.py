"""Admin: the target's token is typed in but never shown back; job pages show per-batch bytes; staff
see only their own deliveries."""
import pytest
from django.contrib.auth.models import Permission

from apps.delivery.models import DeliveryJob, DeliveryTarget
from tests.delivery.conftest import run_released

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("trusted_loopback")]


def test_the_token_is_write_only_in_the_admin(admin_client_logged_in):
    client = admin_client_logged_in
    response = client.post("/admin/delivery/deliverytarget/add/", {
        "name": "FAR", "kind": "portal", "url": "http://127.0.0.1:9", "token": "hidden-token-1", "path": "",
        "description": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    target = DeliveryTarget.objects.get()
    page = client.get(f"/admin/delivery/deliverytarget/{target.pk}/change/").content.decode()
    assert "hidden-token-1" not in page
    client.post(f"/admin/delivery/deliverytarget/{target.pk}/change/", {
        "name": "FAR", "kind": "portal", "url": "http://127.0.0.1:9", "token": "", "path": "", "description": "b"})
    target.refresh_from_db()
    assert target.token == "hidden-token-1" and target.description == "b"


def test_job_page_shows_batches_and_staff_see_only_their_own(client, retrieved, user, django_user_model, settings,
                                                              tmp_path):
    settings.DELIVERY_ROOTS = [tmp_path]
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(tmp_path / "out"))
    mine = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="direct", batch_size=4)
    run_released(mine)
    other = django_user_model.objects.create_user(username="other", password="x-pass-123456", is_staff=True)
    theirs = DeliveryJob.for_retrieval(retrieved, target, user=other, batch_size=4, start=False)
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_deliveryjob"))
    client.force_login(user)
    listing = client.get("/admin/delivery/deliveryjob/").content.decode()
    assert f"Delivery #{mine.pk} to BOX" in listing and f"Delivery #{theirs.pk} " not in listing
    page = client.get(f"/admin/delivery/deliveryjob/{mine.pk}/change/").content.decode()
    batch = mine.items.order_by("number").first()
    assert str(batch.bytes) in page and "succeeded" in page
    assert client.get(f"/admin/delivery/deliveryjob/{theirs.pk}/change/").status_code == 404  # another account's job, as in the API
