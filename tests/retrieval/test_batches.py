"""Batched rows under a real worker (`manage.py qcluster`): a worker SIGKILLed in the middle of a batch of a
query job loses no row and repeats none. The PACS (an in-process C-FIND SCP) counts every row's C-FIND and
holds one row's query unanswered, so the kill lands at a known point: rows before it in the batch done and
written by the batch's lease thread, the held row in flight, the rest of the batch claimed but not started."""
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from apps.retrieval import intake
from apps.retrieval.models import FoundStudy, RetrievalJob
from apps.servers.models import DicomServer
from tests.jobs.cluster import QCluster, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = 3
ROWS = 120
HELD = "P0040"  # batches of one worker double (1, 2, 4 ... 32, 64 rows): this row is in the middle of rows 32-63
DAY = "20240105"


def finds_a_study(patient_id: str) -> bool:
    return patient_id.endswith("7")


class HoldingFindSCP:
    """A PACS that answers one study for every PatientID ending in 7 and none for the others, counts the
    C-FINDs per PatientID, and holds the first C-FIND of HELD unanswered until released."""

    def __init__(self):
        self.asked: Counter = Counter()
        self.held, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        ae = AE(ae_title="HOLDFIND")
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, self._find)])
        self.port = self.server.server_address[1]

    def _find(self, event):
        patient_id = str(event.identifier.PatientID)
        with self._lock:
            self.asked[patient_id] += 1
        if patient_id == HELD and not self.release.is_set():
            self.held.set()
            self.release.wait(120)
        if finds_a_study(patient_id):
            study = Dataset()
            study.QueryRetrieveLevel, study.PatientID, study.StudyDate = "STUDY", patient_id, DAY
            study.StudyInstanceUID, study.ModalitiesInStudy = f"1.2.826.0.1.3680043.9.{int(patient_id[1:]) + 1}", "CT"
            study.NumberOfStudyRelatedInstances = "3"
            yield 0xFF00, study
        yield 0x0000, None


@pytest.fixture
def pacs():
    scp = HoldingFindSCP()
    yield scp
    scp.release.set()
    scp.server.shutdown()


def rows_by_patient(job) -> dict:
    return {i.patient_id: i for i in job.items.all()}


def test_a_worker_killed_mid_batch_loses_no_row_and_repeats_none(pacs, tmp_path):
    DicomServer.objects.create(name="HF", ae_title="HOLDFIND", host="127.0.0.1", port=pacs.port, retries=0,
                               max_associations=1)
    rows = [{"PatientID": f"P{n:04d}", "StudyDate": "2024-01-05", "Modality": "CT", "Server": "HF"}
            for n in range(ROWS)]
    job = RetrievalJob.from_case_list(intake.read_case_list(intake.rows_to_csv(rows), user=None), mode="query",
                                      start=False)
    # JOB_BATCH_SECONDS far above a row's time: each batch is twice the one before, never cut short
    env = {"JOB_LEASE_SECONDS": LEASE, "Q_WORKERS": 1, "JOB_BATCH_SECONDS": 30}
    first = QCluster(tmp_path / "first.log", **env)
    try:
        job.start()
        wait_for(pacs.held.is_set, 60, "the held row's C-FIND")
        # the rows before it in its batch are written by the batch's lease thread while the held row waits
        wait_for(lambda: job.items.filter(status="succeeded").count() == 40, 30, "the rows before it written")
        first.kill()
    finally:
        first.stop()
    at_kill = rows_by_patient(job)
    written = {p: (i.finished_at, i.attempts, i.worker) for p, i in at_kill.items() if i.status == "succeeded"}
    running = {p for p, i in at_kill.items() if i.status == "running"}
    pending = {p for p, i in at_kill.items() if i.status == "pending"}
    assert sorted(written) == [f"P{n:04d}" for n in range(40)]
    assert HELD in running and len(running) >= 2, running  # killed mid-batch: the rest claimed, not started
    assert all(pacs.asked[p] == 0 for p in running - {HELD}), "claimed rows had not started"
    assert len(written) + len(running) + len(pending) == ROWS

    pacs.release.set()  # the held C-FIND ends with its dead association; asked again, it answers at once
    wait_for(lambda: not job.items.filter(status="running", heartbeat_at__gt=timezone.now() - timedelta(
        seconds=LEASE)).exists(), LEASE + 10, "the dead worker's lease to end")
    second = QCluster(tmp_path / "second.log", **env)
    try:
        wait_for(lambda: RetrievalJob.objects.get(pk=job.pk).status not in ("pending", "running"), 90,
                 "the job to finish on the second cluster")
    finally:
        second.stop()

    job.refresh_from_db()
    after = rows_by_patient(job)
    assert job.progress()["succeeded"] == ROWS, {p: (i.status, i.error) for p, i in after.items() if i.error}
    for patient, (finished_at, attempts, worker) in written.items():  # written before the kill: never again
        assert (after[patient].finished_at, after[patient].attempts, after[patient].worker) == (
            finished_at, attempts, worker), patient
        assert pacs.asked[patient] == 1, patient
    for patient in running:  # re-queued by the second cluster's sweep after the lease, run once more
        assert after[patient].attempts == 2 and after[patient].worker not in {w for _, _, w in written.values()}
        assert pacs.asked[patient] == (2 if patient == HELD else 1), patient
    for patient in pending:
        assert after[patient].attempts == 1 and pacs.asked[patient] == 1, patient
    found = list(FoundStudy.objects.filter(item__job=job).values_list("item__patient_id", flat=True))
    assert sorted(found) == sorted(p for p in after if finds_a_study(p)), "each study found once, by its row"
    assert all(after[p].flag == "" if finds_a_study(p) else after[p].flag.startswith("no study on HF")
               for p in after)
    assert "stopped answering" in second.output()


def test_a_slow_row_gives_the_rest_of_its_batch_back_to_other_workers(pacs, settings):
    """In one process: a batch whose first row is held gives its unstarted rows back (pending, their
    attempt not counted) once it has run past JOB_BATCH_SECONDS, instead of keeping them from other workers."""
    from apps.jobs import batch, runner

    settings.JOB_BATCH_SECONDS = 0.05
    DicomServer.objects.create(name="HF", ae_title="HOLDFIND", host="127.0.0.1", port=pacs.port, retries=0,
                               max_associations=1)
    rows = [{"PatientID": f"P{n:04d}", "StudyDate": "2024-01-05", "Modality": "CT", "Server": "HF"}
            for n in range(40, 48)]
    job = RetrievalJob.from_case_list(intake.read_case_list(intake.rows_to_csv(rows), user=None), mode="query",
                                      start=False)
    claimed = batch.claim(job.items.model, job.pk, "test:1", 8)
    assert len(claimed) == 8
    seen = {}
    with runner.WorkerSession("test:1") as session, batch.Batch(job.items.model, job.pk, "test:1", claimed) as run:
        def look_while_held():  # another worker's view of the job while the held row runs over the batch's time
            pacs.held.wait(30)
            wait_for(run.over_time, 5, "the batch to run over its time")
            seen["pending"] = job.items.filter(status="pending").count()
            pacs.release.set()

        looker = threading.Thread(target=look_while_held)
        looker.start()
        for item in run:
            runner._run_claimed(run, item, "test:1", session)
            if run.over_time():
                break
        looker.join()
    assert seen["pending"] == 0  # while the held row ran, its batch held the other seven
    statuses = Counter(job.items.values_list("status", flat=True))
    assert statuses == {"succeeded": 1, "pending": 7}, statuses  # the held row done; the rest given back
    assert set(job.items.filter(status="pending").values_list("attempts", flat=True)) == {0}
    assert set(job.items.filter(status="pending").values_list("worker", flat=True)) == {""}
    assert pacs.asked[HELD] == 1 and pacs.asked["P0041"] == 0
