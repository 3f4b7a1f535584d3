"""Attacks on sending and inboxes from a hostile file on disk and from other accounts over HTTP: a FIFO
or a loop of symbolic links in a sent folder or an inbox folder never hangs a worker (listed as not sent,
the rest reaches a real Orthanc), inboxes cannot take another inbox's folders, patterns cannot stall the
watcher, and names with control characters are never sent."""
import os
import threading

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
