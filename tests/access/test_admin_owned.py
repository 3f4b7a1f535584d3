"""The admin follows the API's own-objects rule for every model with an owner: a staff user holding a model's
view, change and delete permissions sees, opens, changes and deletes only their own uploads, photo uploads
and send jobs; another account's object is a 404 on its change, delete and history pages and is untouched
by bulk actions naming it. "View all jobs" (and superusers) see everyone's, as in the API; inbox runs are
seen by whoever may view inboxes, as in the API. A delivery target's token is never shown, not even to a
user who may only view the target."""
import pytest
from django.contrib.auth.models import Permission

from apps.delivery.models import DeliveryTarget, Upload
from apps.photos.models import PhotoUpload
from apps.sending.models import Inbox, SendJob

pytestmark = pytest.mark.django_db

OWNED = {  # admin URL prefix -> model
    "/admin/delivery/upload/": Upload,
    "/admin/photos/photoupload/": PhotoUpload,
    "/admin/sending/sendjob/": SendJob,
}
PERMISSIONS = [f"{action}_{model._meta.model_name}" for model in OWNED.values()
               for action in ("view", "change", "delete")]


def make(model, owner, marker: str):
    if model is Upload:
        return Upload.objects.create(created_by=owner, filename=f"{marker}.zip", length=10)
    if model is PhotoUpload:
        return PhotoUpload.objects.create(created_by=owner, server_name="PX", backend="cstore", patient_id=marker,
                                          study_instance_uid="1.2.3", series_instance_uid="1.2.3.4")
    return SendJob.objects.create(created_by=owner, source_path=f"/data/{marker}", root="/data")


def staff(django_user_model, name, *codenames):
    person = django_user_model.objects.create_user(name, is_staff=True)
    person.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return person


@pytest.fixture
def owners(django_user_model):
    return (staff(django_user_model, "alice", *PERMISSIONS), staff(django_user_model, "bob", *PERMISSIONS))


@pytest.mark.parametrize("prefix", OWNED)
def test_a_staff_user_sees_and_deletes_only_their_own(client, owners, prefix):
    model = OWNED[prefix]
    alice, bob = owners
    mine, theirs = make(model, alice, "MINE-alice"), make(model, bob, "THEIRS-bob")
    client.force_login(alice)
    listing = client.get(prefix)
    assert listing.status_code == 200
    assert f"{prefix}{mine.pk}/change/" in listing.content.decode()
    assert f"{prefix}{theirs.pk}/change/" not in listing.content.decode()
    assert "THEIRS-bob" not in listing.content.decode()
    assert client.get(f"{prefix}{mine.pk}/change/").status_code == 200
    for page in ("change", "delete", "history"):
        assert client.get(f"{prefix}{theirs.pk}/{page}/").status_code == 404, page
    assert client.post(f"{prefix}{theirs.pk}/delete/", {"post": "yes"}).status_code == 404
    bulk = client.post(prefix, {"action": "delete_selected", "_selected_action": [theirs.pk], "post": "yes"})
    assert bulk.status_code in (200, 302)
    assert model.objects.filter(pk=theirs.pk).exists()  # nothing of bob's deleted
    assert client.post(f"{prefix}{mine.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not model.objects.filter(pk=mine.pk).exists()  # one's own may be deleted


@pytest.mark.parametrize("prefix", OWNED)
def test_view_all_jobs_and_superusers_see_everyones(client, django_user_model, owners, prefix):
    model = OWNED[prefix]
    theirs = make(model, owners[1], "THEIRS-bob")
    auditor = staff(django_user_model, "auditor", "view_all_jobs", f"view_{model._meta.model_name}")
    root = django_user_model.objects.create_superuser("root", password="x", email="")
    for person in (auditor, root):
        client.force_login(person)
        assert f"{prefix}{theirs.pk}/change/" in client.get(prefix).content.decode()
        assert client.get(f"{prefix}{theirs.pk}/change/").status_code == 200


def test_inbox_runs_are_seen_by_whoever_may_view_inboxes_as_in_the_api(client, django_user_model, owners):
    inbox = Inbox.objects.create(name="WARD", path="/data/in/ward", archive_path="/data/archive/ward")
    run = SendJob.objects.create(created_by=None, source_path="/data/in/ward/x", root="/data", inbox=inbox)
    alice = owners[0]
    client.force_login(alice)
    assert client.get(f"/admin/sending/sendjob/{run.pk}/change/").status_code == 404
    alice.user_permissions.add(Permission.objects.get(codename="view_inbox"))
    client.force_login(alice)
    assert client.get(f"/admin/sending/sendjob/{run.pk}/change/").status_code == 200


def test_a_delivery_targets_token_is_never_shown(client, django_user_model):
    target = DeliveryTarget.objects.create(name="FAR", kind="portal", url="https://far.example",
                                           token="secret-token-0123456789")
    for codenames in (["view_deliverytarget"], ["view_deliverytarget", "change_deliverytarget"]):
        viewer = staff(django_user_model, f"viewer{len(codenames)}", *codenames)
        client.force_login(viewer)
        for url in ("/admin/delivery/deliverytarget/", f"/admin/delivery/deliverytarget/{target.pk}/change/"):
            page = client.get(url)
            assert page.status_code == 200
            assert "secret-token" not in page.content.decode(), (codenames, url)
    page = client.get(f"/admin/delivery/deliverytarget/{target.pk}/change/").content.decode()
    assert "Leave empty to keep the current one" in page
    client.force_login(staff(django_user_model, "only-views", "view_deliverytarget"))
    page = client.get(f"/admin/delivery/deliverytarget/{target.pk}/change/").content.decode()
    assert "portal API token: set (never shown)" in page


def server_form(server, **changes):
    form = {"name": server.name, "ae_title": server.ae_title, "host": server.host, "port": server.port,
            "query_timeout": 30, "download_timeout": 120, "retries": 0, "retrieve_method": "c-move",
            "max_associations": 2, "dicomweb_url": server.dicomweb_url, "dicomweb_auth": server.dicomweb_auth,
            "dicomweb_username": "", "dicomweb_secret": "", "open_to_everyone": "on"}
    return {**form, **changes}


def test_a_servers_dicomweb_secret_is_never_shown_and_kept_when_left_empty(client, django_user_model):
    from apps.servers.models import DicomServer

    server = DicomServer.objects.create(name="WEB", ae_title="WEB", host="10.1.2.3", port=104,
                                        dicomweb_url="https://pacs.example/dicom-web", dicomweb_auth="bearer",
                                        dicomweb_secret="bearer-secret-0123")
    client.force_login(staff(django_user_model, "server-viewer", "view_dicomserver"))
    page = client.get(f"/admin/servers/dicomserver/{server.pk}/change/").content.decode()
    assert "bearer-secret" not in page and "DICOMweb password or token: set (never shown)" in page
    client.force_login(staff(django_user_model, "server-editor", "view_dicomserver", "change_dicomserver"))
    page = client.get(f"/admin/servers/dicomserver/{server.pk}/change/").content.decode()
    assert "bearer-secret" not in page and "Leave empty to keep the current one" in page
    saved = client.post(f"/admin/servers/dicomserver/{server.pk}/change/", server_form(server, description="x"))
    assert saved.status_code == 302, saved.content.decode()[:3000]
    server.refresh_from_db()
    assert server.dicomweb_secret == "bearer-secret-0123" and server.description == "x"
