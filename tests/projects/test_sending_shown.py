"""What a project's inbox run or send shows beyond its API body: the admin's job pages (change page, list,
report) and the audit event of the archived folder name the pseudonym only. An inbox without a project
keeps the patient's folder name out of the audit trail too (the run id says which folder)."""
from __future__ import annotations

from pathlib import Path

import pytest

from apps.audit.models import AuditEvent
from apps.jobs.models import JobStatus
from apps.projects.models import Project
from apps.sending.models import Inbox, SendJob
from apps.sending.watcher import InboxWatcher
from tests.projects.planted import PATIENT_ID
from tests.projects.test_sending import planted_case, run_items

pytestmark = pytest.mark.django_db
FOLDER = "#4711-Plantfolder^Hans"


def inbox_run(root: Path, pacs, project=None) -> SendJob:
    (root / "inbox").mkdir()
    box = Inbox.objects.create(name="ward", path=str(root / "inbox"), archive_path=str(root / "archived"),
                               debounce_seconds=5, project=project)
    box.destinations.set([pacs])
    planted_case(root / "inbox" / FOLDER)
    clock = [1000.0]
    watcher = InboxWatcher(mode="polling", clock=lambda: clock[0])
    try:
        runs = watcher.scan_once()
        clock[0] += 6
        runs += watcher.scan_once()
    finally:
        watcher.stop()
    (job,) = runs
    run_items(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_summary()
    return job


def originals_in(text: str) -> list[str]:
    return [v for v in ("Plantfolder", "#4711", "4711-", PATIENT_ID) if v in text]


def test_a_project_inboxs_archiving_audit_names_the_pseudonym_only(root, pacs, empty_orthanc):
    project = Project.objects.create(name="TRIAL1")
    job = inbox_run(root, pacs, project)
    (event,) = AuditEvent.objects.filter(action="folder.archived")
    shown = f"{event.target} {event.details}"
    assert originals_in(shown) == [], shown
    assert project.patient("4711").pseudonym in shown
    every = " ".join(f"{e.action} {e.target} {e.details}" for e in AuditEvent.objects.all())
    assert "job.started" in every and "instances.sent" in every and originals_in(every) == [], every
    assert Path(job.archive_path).name == FOLDER, "the folder itself keeps its name in the archive"


def test_an_inbox_without_a_project_keeps_the_patient_out_of_the_audit(root, pacs, empty_orthanc):
    job = inbox_run(root, pacs)
    (event,) = AuditEvent.objects.filter(action="folder.archived")
    shown = f"{event.target} {event.details}"
    assert originals_in(shown) == [], shown
    assert event.details["run"] == job.pk and str(Path(job.archive_path).parent) == event.details["archive"]
    every = " ".join(f"{e.action} {e.target} {e.details}" for e in AuditEvent.objects.all())
    assert originals_in(every) == [], every


def test_the_admin_pages_of_a_project_send_show_pseudonyms_only(root, pacs, empty_orthanc, admin_client_logged_in):
    project = Project.objects.create(name="TRIAL1")
    job = inbox_run(root, pacs, project)
    pseudonym = project.patient("4711").pseudonym
    pages = [admin_client_logged_in.get(url) for url in (
        f"/admin/sending/sendjob/{job.pk}/change/", "/admin/sending/sendjob/",
        f"/admin/sending/sendjob/?inbox__id__exact={job.inbox_id}", f"/admin/sending/sendjob/{job.pk}/report.csv",
        f"/admin/sending/sendjob/{job.pk}/history/", f"/admin/sending/inbox/{job.inbox_id}/change/")]
    for page in pages:
        assert page.status_code == 200
        text = page.content.decode()
        assert originals_in(text) == [], (page.request["PATH_INFO"], originals_in(text))
    assert pseudonym in pages[0].content.decode()


def test_the_admin_pages_of_a_project_path_send_show_pseudonyms_only(root, pacs, empty_orthanc, admin_client_logged_in):
    Project.objects.create(name="TRIAL1")
    case = root / f"case_{PATIENT_ID}"
    planted_case(case)
    page = admin_client_logged_in.post("/admin/sending/sendjob/send/", {
        "path": str(case), "servers": [pacs.name], "method": "c-store", "project": "TRIAL1"})
    assert page.status_code == 302, page.content.decode()[-3000:]
    job = SendJob.objects.get()
    run_items(job)
    for url in (f"/admin/sending/sendjob/{job.pk}/change/", "/admin/sending/sendjob/",
                f"/admin/sending/sendjob/{job.pk}/report.csv", f"/admin/sending/sendjob/{job.pk}/history/",
                "/admin/audit/auditevent/"):
        text = admin_client_logged_in.get(url).content.decode()
        assert originals_in(text) == [], (url, originals_in(text), text[-4000:])
