"""The inbox as `make run` runs it: the watcher and the worker cluster in their own processes. A folder
that arrived before the watcher started is picked up; the cluster is SIGKILLed in the middle of the
send; the watcher stops cleanly on SIGTERM; a second cluster finishes the folder and archives it once."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from apps.dicom.demo.synthetic import write_dataset
from apps.jobs.models import JobStatus
from apps.sending.models import Inbox, SendItem, SendJob
from tests.jobs.cluster import QCluster, wait_for, worker_env
from tests.sending.conftest import sop_uids

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = 3


def test_sigkill_mid_send_then_restart_archives_the_folder_once(root, pacs, empty_orthanc, tmp_path):
    (root / "inbox").mkdir()
    inbox = Inbox.objects.create(name="ward", path=str(root / "inbox"), archive_path=str(root / "archived"),
                                 debounce_seconds=1)
    inbox.destinations.set([pacs])
    folder = root / "inbox" / "#00042-홍^길동"
    write_dataset(folder, patients=1, studies=1, series=2, instances=100, rows=256, cols=256, seed=9)
    (folder / "manifest.json").rename(folder / "notes.json")  # a non-DICOM file rides along
    uids = sop_uids(folder)
    env = {"IMPORT_ROOTS": str(root), "DATA_DIR": str(settings.DATA_DIR), "JOB_LEASE_SECONDS": LEASE}

    first = QCluster(tmp_path / "first.log", Q_WORKERS=2, **env)
    with open(tmp_path / "watcher.log", "wb") as log:
        watcher = subprocess.Popen([sys.executable, "manage.py", "watch_inboxes", "--poll", "0.2"],
                                   cwd=settings.BASE_DIR, env=worker_env(**env), stdout=log, stderr=subprocess.STDOUT)
    try:
        run = wait_for(lambda: SendJob.objects.filter(inbox=inbox).first(), 30, "the watcher to start a run")
        wait_for(lambda: empty_orthanc.instances(), 60, "the send to be under way", interval=0.01)
        with empty_orthanc.frozen():
            first.kill()
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=15) == 0
    finally:
        first.stop()
        if watcher.poll() is None:
            watcher.kill()
    assert "inbox watcher stopped" in (tmp_path / "watcher.log").read_text()
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and folder.is_dir() and not run.archive_path
    assert len(empty_orthanc.instances()) < len(uids)  # killed half-way

    time.sleep(LEASE + 0.5)
    second = QCluster(tmp_path / "second.log", Q_WORKERS=2, **env)
    try:
        wait_for(lambda: SendJob.objects.get(pk=run.pk).status not in ("pending", "running"), 120,
                 "the second cluster to finish the run")
    finally:
        second.stop()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error_summary()
    assert empty_orthanc.instances() == uids
    assert not folder.exists()
    [archived] = list((root / "archived").glob(f"*/{folder.name}"))
    assert sop_uids(archived) == uids and (archived / "notes.json").exists()
    assert run.log.count("PHASE 3 archived") == 1
    assert max(SendItem.objects.filter(job=run).values_list("attempts", flat=True)) == 2  # re-run after the kill
    assert "stopped answering" in second.output()
    assert not list(Path(settings.DATA_DIR, "sending", "work").glob("*/*"))  # work copies cleaned up
    patients = {p["MainDicomTags"]["PatientID"] for p in empty_orthanc.rest("GET", "/patients?expand").json()}
    assert patients == {"00042"}
    assert os.listdir(root / "inbox") == []
