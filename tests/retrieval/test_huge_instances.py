"""A huge multi-frame instance retrieved by C-MOVE (through the real receiver process) and by C-GET from a real
Orthanc: streamed to its staging file as it arrives, so the receiver's peak memory grows by a small part of
the instance's size, and the file filed holds exactly the bytes the PACS sent."""
import os
import threading
from pathlib import Path

import pytest

from apps.dicom import files
from apps.dicom.demo.huge import write_huge_instance
from apps.jobs import runner
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders
from tests.pacs import dataset_part
from tests.receiver_process import RUNNING, receiver_process

pytestmark = pytest.mark.django_db(transaction=True)
PORTAL_AE = "PORTALHUGE"
SIZE_MB = 240


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("huge")
    header = write_huge_instance(folder / "huge.dcm", SIZE_MB, patient_id="HUGE240")
    return folder, header


@pytest.fixture
def huge_pacs(empty_orthanc, huge):
    empty_orthanc.load(huge[0])
    return empty_orthanc


def kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def retrieve(server: str, header) -> RetrievalJob:
    text = f"PatientID,StudyDate,Modality,Server\n{header.PatientID},2024-01-01,CT,{server}\n"
    (read,) = intake.read_case_lists([("cases.csv", text)], user=None)
    job = RetrievalJob.from_case_list(read.case_list, source_name="cases.csv", start=False)
    for item in job.items.all():
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()
    return job


def test_a_huge_instance_by_c_move_streams_through_the_receiver_in_flat_memory(settings, tmp_path, huge_pacs,
                                                                               huge):
    folder, header = huge
    peer = huge_pacs.peer()
    DicomServer.objects.create(name="BIG", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0)
    with receiver_process(settings, tmp_path, huge_pacs, PORTAL_AE, RECEIVER_PROCESSES="1") as port:
        pid = RUNNING[port].pid
        before = kb(pid, "VmRSS")
        job = retrieve("BIG", header)
        growth_mb = (kb(pid, "VmHWM") - before) / 1024
        said = "".join(RUNNING[port].output)
    assert job.status == "succeeded", (list(job.items.values_list("error", flat=True)), said[-2000:])
    (kept,) = Path(settings.DOWNLOADS_DIR).rglob("*.dcm")
    assert kept.stat().st_size > (SIZE_MB - 2) * 1_000_000
    assert growth_mb < SIZE_MB / 4, f"the receiver's peak memory grew by {growth_mb:.0f} MB"
    sent = (folder / "huge.dcm").read_bytes()
    assert dataset_part(kept.read_bytes()) == sent[files.read_meta(sent).dataset_offset:]
    assert not [p for p in Path(settings.STAGING_DIR).rglob("*.part")]


def test_a_huge_instance_by_c_get_streams_into_staging_in_flat_memory(settings, tmp_path, huge_pacs, huge):
    folder, header = huge
    peer = huge_pacs.peer()
    DicomServer.objects.create(name="BIGGET", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0,
                               retrieve_method="c-get")
    own_data_folders(settings, tmp_path)
    peak, done = [0], threading.Event()

    def watch():  # sampled: this process's VmHWM counts every earlier test too
        while not done.wait(0.05):
            peak[0] = max(peak[0], kb(os_pid, "VmRSS"))

    os_pid = os.getpid()
    before = kb(os_pid, "VmRSS")
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        job = retrieve("BIGGET", header)
    finally:
        done.set()
        watcher.join()
    growth_mb = (peak[0] - before) / 1024
    assert job.status == "succeeded", list(job.items.values_list("error", flat=True))
    (kept,) = Path(settings.DOWNLOADS_DIR).rglob("*.dcm")
    assert growth_mb < SIZE_MB / 4, f"the worker's memory grew by {growth_mb:.0f} MB"
    sent = (folder / "huge.dcm").read_bytes()
    assert dataset_part(kept.read_bytes()) == sent[files.read_meta(sent).dataset_offset:]
