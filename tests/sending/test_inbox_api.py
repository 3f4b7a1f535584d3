"""/api/inboxes/ by name: model permissions (folder names carry patient data), paths confined to the
import roots, and GET {name}/runs/ with the run fields."""
import pytest
from django.contrib.auth.models import Permission

from apps.sending.models import Inbox
from apps.sending.watcher import InboxWatcher
from tests.sending.conftest import run_items, study_tree


@pytest.fixture
def keeper(api, user):
    """The API user, allowed to manage inboxes: the inbox permissions and a staff account."""
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="sending",
                                                         codename__endswith="_inbox"))
    user.is_staff = True
    user.save()
    return api


def body(root, **over):
    return {"name": "ward", "path": str(root / "inbox"), "destinations": ["PACS"], "archive_path": str(root / "arch"),
            "debounce_seconds": 0, **over}


def test_create_list_change_and_runs(keeper, user, root, pacs, empty_orthanc):
    (root / "inbox").mkdir()
    created = keeper.post("/api/inboxes/", body(root), format="json")
    assert created.status_code == 201, created.content
    assert created.json()["pattern"] == "^#([0-9]+)-(.+)$" and created.json()["enabled"] is True
    assert [i["name"] for i in keeper.get("/api/inboxes").json()] == ["ward"]
    assert keeper.patch("/api/inboxes/ward/", {"debounce_seconds": 0, "enabled": True}, format="json").status_code == 200
    from auditlog.models import LogEntry

    changes = LogEntry.objects.filter(content_type__model="inbox").order_by("timestamp")
    assert [c.action for c in changes][:1] == [LogEntry.Action.CREATE] and changes[0].actor == user
    assert {c.actor for c in changes} == {user}  # the change by PATCH names the token's user too

    study_tree(root / "inbox" / "#00042-홍^길동", patients=1, instances=2)
    watcher = InboxWatcher(mode="polling")
    watcher.scan_once()
    [run] = watcher.scan_once()
    watcher.stop()
    run_items(run)
    [listed] = keeper.get("/api/inboxes/ward/runs/").json()
    assert listed["folder"] == "#00042-홍^길동" and listed["status"] == "succeeded"
    assert (listed["files_sent"], listed["skipped"], listed["warnings"], listed["error"]) == (4, 0, 0, "")
    assert listed["archive_path"].startswith(str(root / "arch")) and listed["started_at"] and listed["completed_at"]
    assert "PHASE 3" in listed["log"]
    # inbox runs are visible on /api/sends/ to whoever may view inboxes
    assert keeper.get(f"/api/sends/{run.pk}/").json()["inbox"] == "ward"


@pytest.mark.parametrize("override, field", [
    ({"path": "/etc"}, "path"),
    ({"archive_path": "/tmp/elsewhere"}, "archive_path"),
    ({"error_path": "{root}/../x"}, "error_path"),
    ({"archive_path": "{root}/inbox/archived"}, "archive_path"),
    ({"pattern": "^#([0-9]+$"}, "pattern"),
    ({"pattern": "^#([0-9]+)$"}, "pattern"),
    ({"destinations": []}, "destinations"),
    ({"destinations": ["NOPE"]}, "destinations"),
])
def test_bad_inboxes_are_refused_with_the_field(keeper, root, pacs, override, field):
    override = {k: v.format(root=root) if isinstance(v, str) else v for k, v in override.items()}
    response = keeper.post("/api/inboxes/", body(root, **override), format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Inbox.objects.exists()


def test_inboxes_need_their_permission_to_be_seen_or_changed(client, root, pacs, django_user_model):
    from rest_framework.test import APIClient

    from apps.sending.models import SendJob

    inbox = Inbox.objects.create(name="ward", path=str(root), archive_path=str(root / "a"))
    run = SendJob.objects.create(inbox=inbox, folder="#1-A", source_path=str(root), root=str(root))
    nobody = django_user_model.objects.create_user(username="nobody", password="nobody-pass-123")
    nobody.user_permissions.set(Permission.objects.filter(codename__in=["view_sendjob", "change_sendjob",
                                                                        "add_sendjob"]))
    api = APIClient()
    api.force_authenticate(nobody)
    assert client.get("/api/inboxes/").status_code in (401, 403)
    assert api.get("/api/inboxes/").status_code == 403  # logged in, but no permission on inboxes
    assert api.get("/api/inboxes/ward/runs/").status_code == 403
    assert api.post("/api/inboxes/", body(root), format="json").status_code == 403
    assert api.delete("/api/inboxes/ward/").status_code == 403
    assert api.get(f"/api/sends/{run.pk}/").status_code == 404  # inbox runs: only for who may view inboxes


def test_an_inbox_may_only_send_where_its_author_may_send(keeper, root, pacs):
    pacs.open_to_everyone = False
    pacs.save()
    (root / "inbox").mkdir()
    response = keeper.post("/api/inboxes/", body(root), format="json")
    assert response.status_code == 403 and "send to server 'PACS'" in response.json()["detail"]
    assert not Inbox.objects.exists()
