"""Attacks on sending and inboxes from a hostile file on disk and from other accounts over HTTP: a FIFO
or a loop of symbolic links in a sent folder or an inbox folder never hangs a worker (listed as not sent,
the rest reaches a real Orthanc), inboxes cannot take another inbox's folders, patterns cannot stall the
watcher, and names with control characters are never sent."""
import os
import threading
import time

import pytest

from apps.jobs.models import JobStatus
from apps.sending.models import Inbox, SendJob
from apps.sending.watcher import InboxWatcher
from tests.sending.conftest import run_items, sop_uids, study_tree


def finishes(work, seconds=30):
    """Run `work` on a thread and insist it ends: a FIFO opened for reading blocks for ever."""
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as exc:  # reported to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), "the worker hung (a FIFO opened for reading waits for a writer for ever)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def report_of(api, job) -> dict[str, tuple[str, str]]:
    return {row["file"]: (row["outcome"], row["reason"]) for row in api.get(f"/api/sends/{job.pk}/report").json()["files"]}


@pytest.mark.django_db(transaction=True)
def test_a_fifo_and_a_link_loop_in_a_sent_folder_are_listed_and_the_rest_is_sent(api, root, pacs, empty_orthanc):
    folder = root / "cases"
    study_tree(folder, patients=1, instances=2)
    uids = sop_uids(folder)
    os.mkfifo(folder / "pipe.dcm")
    (folder / "loop.dcm").symlink_to(folder / "loop.dcm")
    response = api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)}, format="json")
    assert response.status_code == 201, response.content
    job = SendJob.objects.get(pk=response.json()["id"])
    finishes(lambda: run_items(job))
    assert job.status == JobStatus.SUCCEEDED, job.error_summary()
    assert empty_orthanc.instances() == uids and len(uids) == 4
    reasons = report_of(api, job)
    assert reasons["pipe.dcm"] == ("skipped", "a FIFO (named pipe), not a regular file: not read")
    assert reasons["loop.dcm"] == ("skipped", "a loop of symbolic links: not followed")
    assert job.progress()["skipped"] == 2 and job.progress()["sent"] == 4


@pytest.mark.django_db(transaction=True)
def test_a_fifo_named_as_the_path_to_send_is_refused_or_skipped_without_hanging(api, root, pacs, empty_orthanc):
    os.mkfifo(root / "pipe.dcm")
    response = finishes(lambda: api.post("/api/sends/", {"servers": ["PACS"], "path": str(root / "pipe.dcm")},
                                         format="json"))
    assert response.status_code == 201, response.content
    job = SendJob.objects.get(pk=response.json()["id"])
    finishes(lambda: run_items(job))
    assert job.status == JobStatus.FAILED and empty_orthanc.instances() == set()
    assert report_of(api, job)["pipe.dcm"] == ("skipped", "a FIFO (named pipe), not a regular file: not read")


@pytest.mark.django_db(transaction=True)
def test_a_fifo_in_an_inbox_folder_does_not_hang_the_watcher_or_the_run(api, root, pacs, empty_orthanc):
    (root / "inbox").mkdir()
    inbox = Inbox.objects.create(name="ward", path=str(root / "inbox"), archive_path=str(root / "arch"),
                                 debounce_seconds=0)
    inbox.destinations.set([pacs])
    folder = root / "inbox" / "#42-Kim^Minji"
    study_tree(folder, patients=1, instances=2)
    os.mkfifo(folder / "pipe.dcm")
    watcher = InboxWatcher(mode="polling")
    try:
        finishes(watcher.scan_once)
        [run] = finishes(watcher.scan_once)
    finally:
        watcher.stop()
    finishes(lambda: run_items(run))
    assert run.status == JobStatus.SUCCEEDED, run.error_summary()
    assert len(empty_orthanc.instances()) == 4
    assert report_of(api, run)["pipe.dcm"] == ("skipped", "a FIFO (named pipe), not a regular file: not read")


# --- inboxes: who may set one up, on which folders, with which pattern ---------------------------------------
@pytest.fixture
def staff_api(api, user):
    """The API user as a staff account (managing inboxes is a staff permission; the user holds it)."""
    user.is_staff = True
    user.save()
    return api


def inbox_body(root, name="ward", **over):
    return {"name": name, "path": str(root / name), "destinations": ["PACS"], "archive_path": str(root / f"{name}-arch"),
            "error_path": str(root / f"{name}-err"), "debounce_seconds": 0, **over}


@pytest.mark.django_db
def test_a_non_staff_account_with_the_inbox_permissions_cannot_manage_inboxes(api, root, pacs):
    theirs = Inbox.objects.create(name="ward", path=str(root / "ward"), archive_path=str(root / "ward-arch"))
    theirs.destinations.set([pacs])
    for response in (api.post("/api/inboxes/", inbox_body(root, "mine"), format="json"),
                     api.patch("/api/inboxes/ward/", {"path": str(root / "cases")}, format="json"),
                     api.put("/api/inboxes/ward/", inbox_body(root, "ward"), format="json"),
                     api.delete("/api/inboxes/ward/")):
        assert response.status_code == 403, response.content
        assert "staff" in response.json()["detail"]
    assert list(Inbox.objects.values_list("name", "path")) == [("ward", str(root / "ward"))]
    assert api.get("/api/inboxes/ward/").status_code == 200  # reading stays a plain model permission


@pytest.mark.django_db
@pytest.mark.parametrize("override, field, theirs", [
    ({"path": "{root}/ward"}, "path", "watched folder"),  # the same folder
    ({"path": "{root}/ward/#7-Kim"}, "path", "watched folder"),  # inside it
    ({"path": "{root}"}, "path", "watched folder"),  # containing it
    ({"path": "{root}/ward-arch"}, "path", "archive"),  # watching the other's archive
    ({"path": "{root}/ward-err/x"}, "path", "error folder"),  # inside the other's error folder
    ({"archive_path": "{root}/ward/a"}, "archive_path", "watched folder"),  # archiving into the other's inbox
    ({"error_path": "{root}/ward"}, "error_path", "watched folder"),
])
def test_inbox_folders_never_overlap_another_inbox(staff_api, root, pacs, override, field, theirs):
    assert staff_api.post("/api/inboxes/", inbox_body(root, "ward"), format="json").status_code == 201
    override = {k: v.format(root=root) for k, v in override.items()}
    response = staff_api.post("/api/inboxes/", inbox_body(root, "thief", **override), format="json")
    assert response.status_code == 400, response.content
    reason = " ".join(response.json()[field])
    assert f"Overlaps inbox ward's {theirs} (" in reason, reason
    assert list(Inbox.objects.values_list("name", flat=True)) == ["ward"]
    # a change is refused the same way
    assert staff_api.post("/api/inboxes/", inbox_body(root, "other"), format="json").status_code == 201
    changed = staff_api.patch("/api/inboxes/other/", override, format="json")
    assert changed.status_code == 400 and field in changed.json(), changed.content
    assert Inbox.objects.get(name="other").path == str(root / "other")


@pytest.mark.django_db
def test_the_admin_refuses_an_overlapping_inbox_too(admin_client_logged_in, root, pacs):
    Inbox.objects.create(name="ward", path=str(root / "ward"), archive_path=str(root / "ward-arch"))
    page = admin_client_logged_in.get("/admin/sending/inbox/add/").content.decode()
    assert "belongs to whoever may manage inboxes" in page
    response = admin_client_logged_in.post("/admin/sending/inbox/add/", {
        "name": "thief", "path": str(root / "ward" / "sub"), "pattern": r"^#([0-9]+)-(.+)$", "destinations": [pacs.pk],
        "debounce_seconds": 0, "archive_path": str(root / "thief-arch"), "error_path": "", "enabled": "on"})
    assert response.status_code == 200 and "inbox ward" in response.content.decode()
    assert not Inbox.objects.filter(name="thief").exists()


@pytest.mark.django_db
def test_the_admin_checks_send_access_to_the_destinations(admin_client_logged_in, root, pacs, django_user_model):
    pacs.open_to_everyone = False
    pacs.save()
    from django.contrib.auth.models import Permission
    from django.test import Client

    clerk = django_user_model.objects.create_user(username="clerk", password="clerk-pass-123", is_staff=True)
    clerk.user_permissions.set(Permission.objects.filter(content_type__app_label="sending", codename__endswith="_inbox"))
    client = Client()
    client.force_login(clerk)
    response = client.post("/admin/sending/inbox/add/", {
        "name": "ward", "path": str(root / "ward"), "pattern": r"^#([0-9]+)-(.+)$", "destinations": [pacs.pk],
        "debounce_seconds": 0, "archive_path": str(root / "ward-arch"), "error_path": "", "enabled": "on"})
    assert response.status_code == 200 and "send to server" in response.content.decode()
    assert not Inbox.objects.exists()


@pytest.mark.django_db
def test_every_change_rechecks_send_access_to_all_destinations(staff_api, root, pacs):
    assert staff_api.post("/api/inboxes/", inbox_body(root), format="json").status_code == 201
    pacs.open_to_everyone = False  # the user may no longer send there
    pacs.save()
    response = staff_api.patch("/api/inboxes/ward/", {"path": str(root / "elsewhere")}, format="json")
    assert response.status_code == 403 and "send to server 'PACS'" in response.json()["detail"]
    assert Inbox.objects.get().path == str(root / "ward")
    assert staff_api.patch("/api/inboxes/ward/", {"enabled": False}, format="json").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("pattern, words", [
    (r"^#([0-9]+)$", "exactly two groups"),
    (r"^(#)([0-9]+)-(.+)$", "exactly two groups"),
    (r"^#([0-9]+-(.+)$", "missing )"),
    (r"^#([0-9]+)-(.+)\1$", "invalid escape"),  # a back-reference: not bounded in time
    (r"^#(?=1)([0-9]+)-(.+)$", "RE2"),  # a look-ahead
])
def test_a_pattern_must_compile_and_have_exactly_two_groups(staff_api, root, pacs, pattern, words):
    response = staff_api.post("/api/inboxes/", inbox_body(root, pattern=pattern), format="json")
    assert response.status_code == 400, response.content
    assert words in " ".join(response.json()["pattern"])
    assert not Inbox.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_catastrophic_pattern_does_not_stall_the_watcher(root, pacs):
    """`^((a+)+)$` against a long name backtracks for ages in Python's re; the watcher's matcher is RE2."""
    (root / "ward").mkdir()
    inbox = Inbox.objects.create(name="ward", path=str(root / "ward"), archive_path=str(root / "arch"),
                                 pattern=r"^((a+)+)$", debounce_seconds=0)
    inbox.destinations.set([pacs])
    (root / "ward" / ("a" * 250 + "!")).mkdir()
    watcher = InboxWatcher(mode="polling")
    try:
        started = time.monotonic()
        assert finishes(watcher.scan_once, seconds=20) == []
        elapsed = time.monotonic() - started
    finally:
        watcher.stop()
    assert elapsed < 2, elapsed
    inbox.refresh_from_db()
    assert [entry["folder"] for entry in inbox.unmatched] == ["a" * 250 + "!"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad, named", [("\x1b", "a control character (U+001B)"), ("\n", "a line break"),
                                        ("\t", "a tab")])
def test_a_folder_name_with_a_control_character_is_unmatched_and_never_sent(root, pacs, empty_orthanc, bad, named):
    (root / "ward").mkdir()
    inbox = Inbox.objects.create(name="ward", path=str(root / "ward"), archive_path=str(root / "arch"),
                                 debounce_seconds=0)
    inbox.destinations.set([pacs])
    name = f"#42-Kim{bad}Minji"
    study_tree(root / "ward" / name, patients=1, instances=1)
    watcher = InboxWatcher(mode="polling")
    try:
        assert watcher.scan_once() + watcher.scan_once() == []
    finally:
        watcher.stop()
    inbox.refresh_from_db()
    [entry] = inbox.unmatched
    assert entry["folder"] == name and named in entry["reason"]
    assert not SendJob.objects.exists() and empty_orthanc.instances() == set()


@pytest.mark.django_db(transaction=True)
def test_deleting_an_inbox_s_only_destination_disables_it_and_says_so(staff_api, root, pacs, caplog):
    assert staff_api.post("/api/inboxes/", inbox_body(root), format="json").status_code == 201
    caplog.set_level("WARNING", logger="apps.sending")
    assert staff_api.delete("/api/servers/PACS/").status_code == 204
    shown = staff_api.get("/api/inboxes/ward/").json()
    assert shown["enabled"] is False and shown["destinations"] == []
    assert "only destination PACS was deleted" in shown["disabled_reason"]
    from apps.audit.models import AuditEvent

    [event] = AuditEvent.objects.filter(action="inbox.disabled")
    assert event.target == f"sending.Inbox:{Inbox.objects.get().pk}" and event.details["server"] == "PACS"
    assert any("ward" in r.getMessage() and "disabled" in r.getMessage() for r in caplog.records)
    # enabling it again, with a destination, clears the reason
    from apps.servers.models import DicomServer

    DicomServer.objects.create(name="BACKUP", ae_title="BACKUP", host="127.0.0.1", port=11112)
    again = staff_api.patch("/api/inboxes/ward/", {"destinations": ["BACKUP"], "enabled": True}, format="json")
    assert again.status_code == 200 and again.json()["disabled_reason"] == ""


@pytest.mark.django_db(transaction=True)
def test_an_inbox_keeps_running_when_one_of_two_destinations_is_deleted(staff_api, root, pacs):
    from apps.servers.models import DicomServer

    DicomServer.objects.create(name="BACKUP", ae_title="BACKUP", host="127.0.0.1", port=11112)
    assert staff_api.post("/api/inboxes/", inbox_body(root, destinations=["PACS", "BACKUP"]),
                          format="json").status_code == 201
    assert staff_api.delete("/api/servers/BACKUP/").status_code == 204
    shown = staff_api.get("/api/inboxes/ward/").json()
    assert shown["enabled"] is True and shown["destinations"] == ["PACS"] and shown["disabled_reason"] == ""
