"""A disk filling up, on a real 20 MB tmpfs holding the staging and downloads folders: a retrieval's rows
wait while the floor (MIN_FREE_GB) is not free, the job and /healthz say why, and the rows run by
themselves once space is freed, nothing lost; the receiver refuses a new move "out of resources" (0xA700)
rather than begin a study the disk cannot hold."""
import os
import subprocess
from pathlib import Path

import pytest

from apps.jobs import diskspace, registry, runner
from apps.retrieval import intake, receiving
from apps.retrieval.models import RetrievalJob
from tests.jobs.test_priority import drain

pytestmark = pytest.mark.django_db(transaction=True)
FLOOR_MB = 8
MB = 10 ** 6


@pytest.fixture
def small_disk(tmp_path, settings):
    """A 20 MB tmpfs on the test's folder, with a floor of 8 MB and a filler that leaves 4 MB free."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(tmp_path)], check=True)
    try:
        settings.MIN_FREE_GB = FLOOR_MB / 1000
        settings.MIN_FREE_GB_BY_FOLDER = {}
        filler = tmp_path / "filler"
        with open(filler, "wb") as out:
            out.write(b"\0" * (diskspace.free_bytes(tmp_path) - 4 * MB))
        yield tmp_path, filler
    finally:
        subprocess.run(["umount", "-l", str(tmp_path)], check=True)


@pytest.fixture
def on_small_disk(small_disk, portal, settings):
    """The in-process receiver (tests/retrieval/conftest.py) staging and filing on the small disk."""
    mount, _ = small_disk
    assert settings.STAGING_DIR.is_relative_to(mount) and settings.DOWNLOADS_DIR.is_relative_to(mount)
    return small_disk


def case_list_for(studies, server="A") -> bytes:
    lines = ["PatientID,StudyDate,Modality,Server"]
    lines += [f"{s['PatientID']},{s['StudyDate'][:4]}-{s['StudyDate'][4:6]}-{s['StudyDate'][6:]},"
              f"{s['Modality']},{server}" for s in studies]
    return "\n".join(lines).encode()


def files_under(folder: Path) -> set[str]:
    return {p.stem for p in folder.rglob("*.dcm")}


def test_rows_wait_on_a_full_disk_and_run_by_themselves_once_space_is_freed(
        on_small_disk, orthanc, orthanc_dataset, orthanc_servers, broker, api, user, client, settings):
    mount, filler = on_small_disk
    studies = orthanc_dataset["studies"][:2]
    job = RetrievalJob.from_case_list(intake.read_case_list(case_list_for(studies), user=user), user=user,
                                      source_name="cases.csv")
    drain(broker)
    assert job.progress()["pending"] == 2 and job.progress()["succeeded"] == 0
    waiting = api.get(f"/api/retrievals/{job.pk}/").json()["waiting"]
    assert waiting == f"Waiting: 4 MB free on {mount}/staging, 8 MB required (MIN_FREE_GB)."
    assert all(item.attempts == 0 and item.queued_at is None for item in job.items.all())
    assert files_under(mount) == set()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["parts"]["disk"] == "low" and f"staging: 4 MB free on {mount}/staging" in health.json()["message"]

    assert runner.sweep() == 2 and drain(broker) is None  # the minute sweep while still full: held again
    assert job.progress()["pending"] == 2 and files_under(mount) == set()

    filler.unlink()  # an operator frees space; the next minute's sweep lets the rows run
    runner.sweep()
    drain(broker)
    job.refresh_from_db()
    assert job.status == "succeeded", list(job.items.values_list("status", "error"))
    for item, study in zip(job.items.order_by("line"), studies):
        assert item.attempts == 1 and item.waiting == ""
        assert files_under(settings.DOWNLOADS_DIR / item.path) == orthanc.study_instances(study["StudyInstanceUID"])
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_receiver_refuses_a_new_move_out_of_resources_and_stages_nothing(
        on_small_disk, orthanc, orthanc_dataset, orthanc_servers, user, monkeypatch, caplog):
    mount, _ = on_small_disk
    # The workers' floor check let this row in just before the disk filled: the receiver is the last guard.
    monkeypatch.setattr(registry, "CHECKS", [c for c in registry.CHECKS if c is not diskspace.hold])
    study = orthanc_dataset["studies"][0]
    job = RetrievalJob.from_case_list(intake.read_case_list(case_list_for([study]), user=user), user=user,
                                      source_name="cases.csv", start=False)
    item = job.items.get()
    runner.run_item(item._meta.label, item.pk, continue_with_job=False)
    item.refresh_from_db()
    assert item.status == "failed" and item.instances == 0, item.error
    assert "our receiver refused it: out of resources (staging: " in item.error
    assert "The PACS is not to blame; free space, then retry the row." in item.error
    assert files_under(mount) == set()  # not half a study: nothing at all
    assert any("out of resources" in r.getMessage() and str(mount / "staging") in r.getMessage()
               for r in caplog.records if r.name == "apps.retrieval.receive")


def test_a_move_under_way_goes_on_into_the_floor(tmp_path, settings, monkeypatch):
    """Only the first instance of a move is refused: one already staging keeps its instances coming."""
    from apps.dicom.staging import MoveStaging
    from apps.dicom.wire.received import InstanceRefused

    settings.STAGING_DIR = tmp_path / "staging"
    settings.MIN_FREE_GB = 10
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 3 * 10 ** 9)
    staging = MoveStaging(settings.STAGING_DIR)
    write = receiving.staging_writer(staging)

    class Instance:
        calling_ae, peer_address, size = "ORTH", "127.0.0.1", 4
        move_originator_ae, move_originator_message_id = "PORTAL", 7
        sop_instance_uid, chunks, streamed = "1.2.3.4", [b"DICM"], False

        def written(self):
            pass

    with pytest.raises(InstanceRefused) as refused:
        write(Instance())
    assert refused.value.status == receiving.OUT_OF_RESOURCES == 0xA700
    assert "out of resources (staging: 3 GB free on" in refused.value.comment and "10 GB required" in refused.value.comment
    assert not (settings.STAGING_DIR / "PORTAL").exists()
    (settings.STAGING_DIR / "PORTAL" / "7").mkdir(parents=True)  # the move had begun before the disk filled
    assert write(Instance()) == 0x0000
    assert os.listdir(settings.STAGING_DIR / "PORTAL" / "7") == ["1.2.3.4.dcm"]
