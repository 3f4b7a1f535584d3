"""Retention on real folders and rows: the dry run lists exactly what the run removes; what a paused or
running job needs, what is too young and what the portal did not name is kept; job records go with their
items in batches; removals are logged without patient identifiers and audited."""
import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core import retention
from apps.delivery.models import DeliveryJob, DeliveryTarget, Upload
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.sending.models import Inbox, SendJob
from apps.servers.models import DicomServer, EchoItem, EchoJob

pytestmark = pytest.mark.django_db
PATIENT = "#4711-Doe^Jane"  # an inbox folder named after a patient: never in a log line


def old(path: Path, days: float) -> Path:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp), follow_symlinks=False)
    return path


def make(path: Path, size: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def finished(model, days_ago: float, **fields):
    done = timezone.now() - timedelta(days=days_ago)
    return model.objects.create(status="succeeded", completed_at=done, started_at=done, **fields)


@pytest.fixture
def portal(settings, tmp_path, user):
    """A portal with something of every kind, old and young, needed and not. Returns the keys expected
    to be listed."""
    settings.DATA_DIR = tmp_path / "data"
    settings.QUARANTINE_DIR = tmp_path / "quarantine"
    settings.DOWNLOADS_DIR = tmp_path / "downloads"
    settings.UPLOADS_DIR = tmp_path / "uploads"
    settings.RETENTION_DELETE_BATCH = 10
    expected = set()

    archive = tmp_path / "archive"
    Inbox.objects.create(name="WARD", path=str(tmp_path / "inbox"), archive_path=str(archive))
    expected.add(str(make(archive / "20260801_101010" / PATIENT / "a.dcm").parent.parent))  # 128 days
    make(archive / "20261201_101010" / PATIENT / "a.dcm")  # 6 days: young
    make(archive / "old-stuff" / "a.dcm")  # not a name the portal gives
    (archive / "20250101_000000").symlink_to(tmp_path / "inbox")
    needed = make(archive / "20260701_000000" / "#9-Roe" / "a.dcm").parent
    SendJob.objects.create(source_path=str(needed), root=str(archive), status="running", paused=True,
                           folder="#9-Roe")

    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    done = finished(RetrievalJob, 40, source_name="a.csv")
    paused = RetrievalJob.objects.create(source_name="b.csv", status="running", paused=True)
    expected.add(str(old(make(settings.QUARANTINE_DIR / f"retrieval-{done.pk}-5-abcd1234" / "x.dcm").parent, 40)))
    old(make(settings.QUARANTINE_DIR / f"retrieval-{paused.pk}-6-abcd1234" / "x.dcm").parent, 40)
    make(settings.QUARANTINE_DIR / f"retrieval-{done.pk}-7-abcd1234" / "x.dcm")  # young
    old(make(settings.QUARANTINE_DIR / "someone-elses" / "x.dcm").parent, 400)

    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(tmp_path / "box"))
    for job, delivery_paused in ((done, False), (paused, True)):
        folder = make(settings.DOWNLOADS_DIR / "LK" / f"20240101_P{job.pk}_CT" / "1.dcm").parent
        RetrievalItem.objects.create(job=job, line=2, patient_id=f"P{job.pk}", dicom_server=server, server_name="LK",
                                     status="succeeded", path=str(folder.relative_to(settings.DOWNLOADS_DIR)))
        finished(DeliveryJob, 35, retrieval=job, target=target, clear=False, paused=delivery_paused)
        if job is done:
            expected.add(str(folder))
    young = finished(RetrievalJob, 1, source_name="c.csv")
    folder = make(settings.DOWNLOADS_DIR / "LK" / "20240102_P9_CT" / "1.dcm").parent
    RetrievalItem.objects.create(job=young, line=2, patient_id="P9", dicom_server=server, server_name="LK",
                                 status="succeeded", path=str(folder.relative_to(settings.DOWNLOADS_DIR)))
    finished(DeliveryJob, 1, retrieval=young, target=target, clear=False)

    reports = settings.DATA_DIR / "reports"
    expected.add(str(old(make(reports / "failed_downloads_20260801_101010_job3.txt"), 120)))
    make(reports / "failed_downloads_20261201_101010_job4.txt")
    old(make(reports / "notes.txt"), 400)

    stale = Upload.objects.create(created_by=user, filename="x.zip", length=10, offset=4,
                                  expires_at=timezone.now() - timedelta(hours=1))
    make(stale.data_path, 4)
    expected.add(f"upload:{stale.pk}")
    Upload.objects.create(created_by=user, filename="y.zip", length=10)

    echo = finished(EchoJob, 400)
    EchoItem.objects.bulk_create([EchoItem(job=echo, server_name="LK", status="succeeded") for _ in range(35)])
    expected.add(f"servers.EchoJob:{echo.pk}")
    finished(EchoJob, 400, paused=True)
    finished(EchoJob, 20)
    long_done = finished(RetrievalJob, 400, source_name="d.csv")  # a running delivery still reads it
    DeliveryJob.objects.create(retrieval=long_done, target=target, status="running")
    return expected


def test_the_run_removes_exactly_what_the_dry_run_listed(portal, tmp_path, caplog):
    listed = retention.plan()
    assert {c.key for c in listed} == portal
    before = {p for p in tmp_path.rglob("*")}
    with caplog.at_level(logging.INFO):
        outcome = retention.apply(listed)
    assert outcome.removed == listed and not outcome.kept and not outcome.failed
    files = [Path(c.key) for c in listed if not c.key.startswith(("upload:", "servers."))]
    gone = {p for p in before if not os.path.lexists(p)}
    assert gone == {p for p in before if any(p == f or p.is_relative_to(f) for f in files)} | {
        Upload.objects.model(id=c.key.removeprefix("upload:")).data_path for c in listed if c.key.startswith("upload:")}
    assert retention.plan() == []  # nothing left to remove, everything kept still there
    assert EchoJob.objects.count() == 2 and RetrievalJob.objects.count() == 4 and Upload.objects.count() == 1
    assert (tmp_path / "archive" / "20260701_000000" / "#9-Roe" / "a.dcm").exists()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retention removed 1 inbox-archives" in logged and "4711" not in logged and "Doe" not in logged
    events = {e.details["category"]: e for e in AuditEvent.objects.filter(action="retention.removed")}
    assert set(events) == {c.category for c in listed}
    assert events["inbox-archives"].details["entries"] == ["inbox WARD: archive 20260801_101010"]
    assert events["job-records"].details["rows"] == 36


def test_a_job_paused_after_the_dry_run_keeps_its_files(portal, settings):
    listed = retention.plan()
    quarantined = next(c for c in listed if c.category == "quarantine")
    job_id = int(Path(quarantined.key).name.split("-")[1])
    RetrievalJob.objects.filter(pk=job_id).update(paused=True)
    outcome = retention.apply(listed)
    assert quarantined in outcome.kept and Path(quarantined.key).exists()
    delivered = next(c for c in listed if c.category == "delivered-downloads")
    assert delivered in outcome.kept and Path(delivered.key).exists()


def test_job_items_are_deleted_in_batches_of_the_setting(portal, settings):
    job = EchoJob.objects.get(pk=int(next(k for k in portal if k.startswith("servers.")).split(":")[1]))
    candidate = next(c for c in retention.plan() if c.key == f"servers.EchoJob:{job.pk}")
    with CaptureQueriesContext(connection) as queries:
        retention.apply([candidate])
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "servers_echoitem"')]
    by_id = [sql for sql in deletes if '"servers_echoitem"."id" IN' in sql]
    assert [sql.count(",") + 1 for sql in by_id] == [10, 10, 10, 5]  # 35 items, 10 per transaction
    assert len(deletes) - len(by_id) <= 1  # Django's own cascade from the job: nothing left for it
    assert not EchoItem.objects.filter(job_id=job.pk).exists() and not EchoJob.objects.filter(pk=job.pk).exists()


def test_zero_days_keeps_a_kind_for_ever(portal, settings):
    settings.RETENTION_JOBS_DAYS = settings.RETENTION_QUARANTINE_DAYS = 0
    kinds = {c.category for c in retention.plan()}
    assert "job-records" not in kinds and "quarantine" not in kinds and "reports" in kinds


def test_the_command_lists_on_a_dry_run_and_removes_without(portal, capsys):
    call_command("retention", "--dry-run")
    listed = capsys.readouterr().out
    assert f"{len(portal)} entries would be removed" in listed and "inbox WARD: archive 20260801_101010" in listed
    assert {c.key for c in retention.plan()} == portal  # nothing removed
    call_command("retention")
    assert f"{len(portal)} entries removed" in capsys.readouterr().out and retention.plan() == []


def test_the_admin_page_shows_the_dry_run_without_patients(portal, admin_client_logged_in):
    page = admin_client_logged_in.get("/admin/retention/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "inbox-archives: 1 entry" in text and "job-records: 1 entry" in text and "echo job #" in text
    assert "4711" not in text and "Doe" not in text
    assert {c.key for c in retention.plan()} == portal  # looking removes nothing


def test_retention_runs_daily():
    from django_q.models import Schedule

    from apps.core.apps import RETENTION_SCHEDULE

    schedule = Schedule.objects.get(name=RETENTION_SCHEDULE)
    assert schedule.func == "apps.core.retention.run" and schedule.schedule_type == Schedule.DAILY
