"""Retention against hostile files on disk and hostile rows: a symlink named as the portal names its
quarantine, archives and reports, pointing at something precious, and a case folder path leading out of
the downloads; none is listed, nothing behind them is touched."""
import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core import retention
from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.sending.models import Inbox
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


def aged(path, days=400):
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp), follow_symlinks=False)


@pytest.fixture
def precious(tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "keep.dcm").write_bytes(b"mine")
    return folder


def test_symlinks_named_like_the_portals_entries_are_never_followed(settings, tmp_path, precious):
    settings.DATA_DIR, settings.QUARANTINE_DIR = tmp_path / "data", tmp_path / "quarantine"
    settings.QUARANTINE_DIR.mkdir()
    (settings.QUARANTINE_DIR / "retrieval-1-1-abcd").symlink_to(precious)
    aged(settings.QUARANTINE_DIR / "retrieval-1-1-abcd")
    reports = settings.DATA_DIR / "reports"
    reports.mkdir(parents=True)
    (reports / "failed_downloads_20200101_000000_job1.txt").symlink_to(precious / "keep.dcm")
    aged(reports / "failed_downloads_20200101_000000_job1.txt")
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "20200101_000000").symlink_to(precious)
    Inbox.objects.create(name="WARD", path=str(tmp_path / "inbox"), archive_path=str(archive))
    assert retention.plan() == []
    Inbox.objects.filter(name="WARD").update(archive_path=str(archive / "20200101_000000"))  # the root itself
    assert retention.plan() == []
    assert (precious / "keep.dcm").read_bytes() == b"mine"


def test_a_case_folder_path_leading_out_of_the_downloads_is_not_listed(settings, tmp_path, precious):
    settings.DOWNLOADS_DIR = tmp_path / "downloads"
    settings.DOWNLOADS_DIR.mkdir()
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    long_ago = timezone.now() - timedelta(days=100)
    job = RetrievalJob.objects.create(source_name="a.csv", status="succeeded", completed_at=long_ago)
    for line, path in ((2, "../precious"), (3, str(precious))):
        RetrievalItem.objects.create(job=job, line=line, patient_id="P", dicom_server=server, server_name="LK",
                                     status="succeeded", path=path)
    (settings.DOWNLOADS_DIR / "LK").mkdir()
    (settings.DOWNLOADS_DIR / "LK" / "link").symlink_to(precious)
    RetrievalItem.objects.create(job=job, line=4, patient_id="P", dicom_server=server, server_name="LK",
                                 status="succeeded", path="LK/link")
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(tmp_path / "box"))
    DeliveryJob.objects.create(retrieval=job, target=target, status="succeeded", completed_at=long_ago)
    assert [c for c in retention.plan() if c.category == "delivered-downloads"] == []
    assert (precious / "keep.dcm").read_bytes() == b"mine"
