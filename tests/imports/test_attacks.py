"""Attacks on folder import from hostile files on disk, through the API: a loop of symbolic links, a FIFO
and a device in the tree are listed as not used and the rest is imported (never "Internal error"); a
multi-valued PatientID is refused with the reason, never stored as Python's repr of a list."""
import os
import stat
import threading

import pytest

from apps.imports.models import ImportedPatient, ImportJob
from tests.imports.conftest import run_job
from tests.imports.tree import ct, write

pytestmark = pytest.mark.django_db(transaction=True)


def start(api, source) -> ImportJob:
    response = api.post("/api/imports/", {"source_path": str(source)}, format="json")
    assert response.status_code == 201, response.content
    return ImportJob.objects.get(task_id=response.json()["task_id"])


def finished(job: ImportJob) -> ImportJob:
    done = {}
    worker = threading.Thread(target=lambda: done.setdefault("job", run_job(job)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the import hung"
    return done["job"]


def status_of(api, job) -> dict:
    return api.get(f"/api/imports/{job.task_id}/status").json()


def test_a_link_loop_a_fifo_and_a_device_are_listed_and_the_rest_is_imported(api, import_root):
    source = import_root / "tree"
    write(ct("P1", "Kim^Minji"), source / "a.dcm")
    write(ct("P1", "Kim^Minji"), source / "sub" / "b.dcm")
    (source / "loop.dcm").symlink_to(source / "loop.dcm")
    (source / "sub" / "ping").symlink_to(source / "sub" / "pong")
    (source / "sub" / "pong").symlink_to(source / "sub" / "ping")
    os.mkfifo(source / "pipe.dcm")
    os.mknod(source / "null.dcm", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    job = finished(start(api, source))
    body = status_of(api, job)
    errors = {e["file"]: e["reason"] for e in body["errors"]}
    assert errors == {"loop.dcm": "a loop of symbolic links: not followed",
                      "sub/ping": "a loop of symbolic links: not followed",
                      "sub/pong": "a loop of symbolic links: not followed",
                      "pipe.dcm": "a FIFO (named pipe), not a regular file: not read",
                      "null.dcm": "a character device, not a regular file: not read"}
    assert not any("Internal error" in reason for reason in errors.values())
    assert body["progress"]["new_images_uploaded"] == 2 and body["status"] == "partial"


def test_a_multi_valued_patient_id_is_refused_with_the_reason(api, import_root):
    source = import_root / "multi"
    hostile = ct("P1", "Lee^Jun")
    hostile.PatientID = ["A/B", "C*?"]  # written as A/B\C*? : two values
    write(hostile, source / "multi.dcm")
    write(ct("P2", "Park^Jisoo"), source / "fine.dcm")
    job = finished(start(api, source))
    errors = {e["file"]: e["reason"] for e in status_of(api, job)["errors"]}
    assert set(errors) == {"multi.dcm"}
    assert "PatientID" in errors["multi.dcm"] and "2 values" in errors["multi.dcm"]
    assert list(ImportedPatient.objects.values_list("patient_id", flat=True)) == ["P2"]
    assert not ImportedPatient.objects.filter(patient_id__contains="[").exists()


def test_a_file_swapped_for_a_fifo_after_the_scan_is_refused_not_waited_for(api, import_root):
    """The scan and the batches are apart in time: a batch never opens what is no longer a regular file."""
    from apps.jobs import runner

    source = import_root / "swap"
    write(ct("P1", "Kim^Minji"), source / "a.dcm")
    write(ct("P1", "Kim^Minji"), source / "b.dcm")
    job = start(api, source)
    scan = job.items.get(kind="scan")
    runner.run_item(scan._meta.label, scan.pk, continue_with_job=False)
    (source / "b.dcm").unlink()
    os.mkfifo(source / "b.dcm")
    errors = {e["file"]: e["reason"] for e in status_of(api, finished(job))["errors"]}
    assert [(os.path.basename(f), r) for f, r in errors.items()] == [
        ("b.dcm", "a FIFO (named pipe), not a regular file: not read")]
    assert status_of(api, job)["progress"]["new_images_uploaded"] == 1
