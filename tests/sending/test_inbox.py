"""Watched inboxes end to end against a real Orthanc: a `#<PatientID>-<PatientName>` folder is rewritten,
sent, and archived only once every instance was confirmed; failures leave it in place until a retry."""
from pathlib import Path

import pytest

from apps.jobs.models import JobStatus
from apps.sending.models import Inbox, SendJob
from apps.sending.watcher import InboxWatcher
from tests.sending.conftest import run_items, sop_uids, study_tree

KOREAN = "홍^길동"
DEBOUNCE = 5


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def inbox(root, pacs) -> Inbox:
    (root / "inbox").mkdir()
    box = Inbox.objects.create(name="ward", path=str(root / "inbox"), archive_path=str(root / "archived"),
                               debounce_seconds=DEBOUNCE)
    box.destinations.set([pacs])
    return box


@pytest.fixture
def watcher():
    clock = Clock()
    w = InboxWatcher(mode="polling", clock=clock)
    w.clock_ = clock
    yield w
    w.stop()


def ready(watcher, seconds=DEBOUNCE + 1) -> list[SendJob]:
    """One pass to see the folder, then one after the quiet time: returns the runs started."""
    first = watcher.scan_once()
    watcher.clock_.now += seconds
    return first + watcher.scan_once()


def korean_folder(inbox: Inbox) -> tuple[Path, set[str]]:
    folder = Path(inbox.path) / f"#00042-{KOREAN}"
    study_tree(folder / "nested", patients=2, instances=3)  # two other patients, two series each, nested
    (folder / "readme.txt").write_text("scanned at the front desk")
    return folder, sop_uids(folder)


def orthanc_patients(orthanc) -> dict[str, dict]:
    return {p["MainDicomTags"]["PatientID"]: p for p in orthanc.rest("GET", "/patients?expand").json()}


def test_a_ready_folder_is_rewritten_sent_and_archived(inbox, watcher, empty_orthanc):
    folder, uids = korean_folder(inbox)
    assert len(uids) == 12
    sample = next(folder.rglob("IMG*.dcm")).read_bytes()
    (folder / "cut.dcm").write_bytes(sample[: len(sample) // 2])  # a copy that never finished
    [run] = ready(watcher)
    assert run.folder == folder.name and run.patient_id == "00042" and run.patient_name == KOREAN
    run_items(run)

    assert run.status == JobStatus.SUCCEEDED, run.error_summary()
    assert empty_orthanc.instances() == uids
    patients = orthanc_patients(empty_orthanc)
    assert set(patients) == {"00042"}  # every file now belongs to the folder's patient
    assert patients["00042"]["MainDicomTags"]["PatientName"] == KOREAN
    tags = empty_orthanc.rest("GET", f"/instances/{empty_orthanc.rest('GET', '/instances').json()[0]}/tags?simplify")
    assert tags.json()["SpecificCharacterSet"] == "ISO_IR 192"
    # archived once, under a timestamp folder, with everything in it (the text file too); the inbox is empty
    [archived] = list((Path(inbox.archive_path)).glob(f"*/{folder.name}"))
    assert archived.parent.name[:8].isdigit() and archived.parent.name[8] == "_"
    assert str(archived) == run.archive_path
    assert sop_uids(archived) == uids and (archived / "readme.txt").exists()
    assert not folder.exists()
    progress = run.progress()
    assert (progress["files"], progress["sent"], progress["skipped"], progress["not_stored"]) == (14, 12, 2, 0)
    skipped = dict(run.items.first().result["skipped"])
    assert "not a DICOM file" in skipped["readme.txt"] and "truncated" in skipped["cut.dcm"]
    # the source files were never modified: the archive holds them as they came
    import pydicom
    ids = {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in archived.rglob("*.dcm")}
    assert ids == {"SRC00001", "SRC00002"}
    assert "PHASE 1" in run.log and "PHASE 2" in run.log and "PHASE 3 archived" in run.log
    assert watcher.scan_once() == []  # nothing left to do


def test_a_folder_still_changing_waits_and_is_sent_once(inbox, watcher):
    folder = Path(inbox.path) / "#7-Kim^Young^Hee"
    study_tree(folder, patients=1, instances=1)
    assert watcher.scan_once() == []
    watcher.clock_.now += DEBOUNCE - 1
    (folder / "late").mkdir()
    (folder / "late" / "more.dcm").write_bytes(next(folder.rglob("IMG*.dcm")).read_bytes())  # still copying
    assert watcher.scan_once() == []  # changed: the quiet time starts again
    watcher.clock_.now += DEBOUNCE - 1
    assert watcher.scan_once() == []
    watcher.clock_.now += 2
    [run] = watcher.scan_once()
    assert run.items.get().files == 3
    watcher.clock_.now += DEBOUNCE * 3
    assert watcher.scan_once() == []  # the run is pending: never a second one for the same folder


def test_a_folder_that_arrived_while_the_watcher_was_down_is_picked_up(inbox):
    folder = Path(inbox.path) / "#12345-HongGildong"
    study_tree(folder, patients=1, instances=1)
    clock = Clock()
    fresh = InboxWatcher(mode="polling", clock=clock)  # a watcher (re)started after the folder came
    try:
        assert fresh.scan_once() == []  # it waits one full quiet period: the copy may still be running
        clock.now += DEBOUNCE
        [run] = fresh.scan_once()
        assert run.patient_id == "12345"
    finally:
        fresh.stop()


def test_a_wrongly_named_folder_is_reported_once_and_left_alone(inbox, watcher):
    for name in ("12345-NoHash", "#ABC-Name", "#123_Underscore"):
        study_tree(Path(inbox.path) / name, patients=1, instances=1)
    assert ready(watcher) == []
    watcher.clock_.now += 100
    assert watcher.scan_once() == []
    inbox.refresh_from_db()
    assert sorted(e["folder"] for e in inbox.unmatched) == ["#123_Underscore", "#ABC-Name", "12345-NoHash"]
    assert all("does not match" in e["reason"] for e in inbox.unmatched)
    assert all((Path(inbox.path) / name).is_dir() for name in ("12345-NoHash", "#ABC-Name", "#123_Underscore"))
    assert not SendJob.objects.exists()


def test_destination_down_keeps_the_folder_then_retry_sends_and_archives_once(inbox, watcher, pacs, empty_orthanc,
                                                                             free_port):
    real_port = pacs.port
    pacs.port = free_port  # nobody listens there
    pacs.save()
    folder, uids = korean_folder(inbox)
    [run] = ready(watcher)
    run_items(run)
    assert run.status == JobStatus.FAILED
    assert "connection refused" in run.error_summary()
    assert folder.is_dir() and sop_uids(folder) == uids  # nothing moved, nothing lost
    assert not Path(inbox.archive_path).exists() and run.archive_path == ""
    assert run.progress()["not_stored"] == 12 and run.progress()["failed"] == 1  # files; the item
    watcher.clock_.now += DEBOUNCE * 3
    assert watcher.scan_once() == []  # the failed run waits for a retry; no new run every debounce

    pacs.port = real_port  # the destination is back
    pacs.save()
    assert run.retry_failed() == 1
    run_items(run)
    assert run.status == JobStatus.SUCCEEDED, run.error_summary()
    assert empty_orthanc.instances() == uids
    assert len(list(Path(inbox.archive_path).glob(f"*/{folder.name}"))) == 1 and not folder.exists()
    assert run.log.count("PHASE 3 archived") == 1
    run.refresh_status()  # settling again (another worker, the watcher's sweep) moves nothing twice
    watcher.settle_finished()
    assert len(list(Path(inbox.archive_path).glob(f"*/{folder.name}"))) == 1


def test_a_failed_folder_moves_to_the_error_folder_and_a_retry_sends_it_from_there(inbox, watcher, pacs, root,
                                                                                   free_port, empty_orthanc):
    inbox.error_path = str(root / "errors")
    inbox.save()
    real_port, pacs.port = pacs.port, free_port
    pacs.save()
    folder, uids = korean_folder(inbox)
    [run] = ready(watcher)
    run_items(run)
    assert run.status == JobStatus.FAILED and not folder.exists()
    moved = root / "errors" / folder.name
    assert sop_uids(moved) == uids and run.source_path == str(moved)
    pacs.port = real_port
    pacs.save()
    run.retry_failed()
    run_items(run)
    assert run.status == JobStatus.SUCCEEDED, run.error_summary()
    assert empty_orthanc.instances() == uids and not moved.exists()
    assert Path(run.archive_path).is_dir()


def test_every_destination_must_confirm_before_the_folder_is_archived(inbox, watcher, pacs, free_port, empty_orthanc):
    from apps.servers.models import DicomServer

    backup = DicomServer.objects.create(name="BACKUP", ae_title="BACKUP", host="127.0.0.1", port=free_port, retries=0)
    inbox.destinations.add(backup)
    folder, uids = korean_folder(inbox)
    [run] = ready(watcher)
    run_items(run)
    assert run.status == JobStatus.FAILED and folder.is_dir()
    assert empty_orthanc.instances() == uids  # the primary has it all; the backup has nothing
    destinations = run.items.get().result["destinations"]
    assert destinations["PACS"]["done"] and not destinations["BACKUP"]["done"]
    backup.ae_title, backup.port = empty_orthanc.aet, empty_orthanc.dicom_port
    backup.save()
    run.retry_failed()
    run_items(run)
    assert run.status == JobStatus.SUCCEEDED and not folder.exists()
    assert "PHASE 2 c-store to PACS" in run.log and run.log.count("to PACS:") == 1  # not sent twice to the primary


def test_inbox_changes_in_the_database_apply_without_a_restart(inbox, watcher, root):
    folder = Path(inbox.path) / "#1-A"
    study_tree(folder, patients=1, instances=1)
    Inbox.objects.filter(pk=inbox.pk).update(enabled=False)
    assert ready(watcher) == []  # disabled: not even looked at
    Inbox.objects.filter(pk=inbox.pk).update(enabled=True, debounce_seconds=1000)
    assert ready(watcher) == []  # the new, longer quiet time applies
    Inbox.objects.filter(pk=inbox.pk).update(debounce_seconds=1)
    watcher.clock_.now += 2
    assert len(watcher.scan_once()) == 1


def test_inotify_marks_changed_folders_between_full_rescans(inbox):
    import time as real_time

    clock = Clock()
    w = InboxWatcher(mode="inotify", clock=clock)
    try:
        assert w.mode == "inotify"
        folder = Path(inbox.path) / "#9-Lee"
        study_tree(folder, patients=1, instances=1)
        assert w.scan_once() == []  # the first pass is a full one: the folder is seen
        clock.now += 1
        assert w.scan_once() == []  # quiet so far (the inotify watch was set up by the first pass)
        (folder / "late.dcm").write_bytes(next(folder.rglob("IMG*.dcm")).read_bytes())
        real_time.sleep(0.5)  # let the event arrive
        clock.now += DEBOUNCE  # past the quiet time of the first content, far from the next full rescan
        assert w.scan_once() == []  # the event made it re-read the folder: it changed, so it waits again
        clock.now += DEBOUNCE
        [run] = w.scan_once()
        assert sum(i.files for i in run.items.all()) == 3
    finally:
        w.stop()


def test_a_folder_without_any_dicom_file_fails_and_stays(inbox, watcher):
    folder = Path(inbox.path) / "#5-Park"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4 not an image")
    [run] = ready(watcher)
    run_items(run)
    assert run.status == JobStatus.FAILED and "Nothing was sent" in run.error_summary()
    assert folder.is_dir() and not Path(inbox.archive_path).exists()
