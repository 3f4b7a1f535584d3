"""A retrieval row's C-FINDs in a worker's session: one association carries the queries of every row of a
job to the same server (wire/find_scu.py), so a long case list pays for one association, not one per row."""
import threading

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from apps.jobs import runner
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


class CountingFindSCP:
    """A PACS with no studies that counts the associations opened and the C-FINDs asked."""

    def __init__(self):
        self.opened = self.finds = 0
        self._lock = threading.Lock()
        ae = AE(ae_title="COUNTFIND")
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        handlers = [(evt.EVT_CONN_OPEN, self._opened), (evt.EVT_C_FIND, self._find)]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = self.server.server_address[1]

    def _opened(self, event):
        with self._lock:
            self.opened += 1

    def _find(self, event):
        with self._lock:
            self.finds += 1
        yield 0x0000, None


@pytest.fixture
def counting_pacs():
    pacs = CountingFindSCP()
    yield pacs
    pacs.server.shutdown()


def test_one_association_carries_the_c_finds_of_every_row(counting_pacs):
    DicomServer.objects.create(name="CF", ae_title="COUNTFIND", host="127.0.0.1", port=counting_pacs.port,
                               retries=0, max_associations=1)
    rows = [{"PatientID": f"NOBODY{n}", "StudyDate": "2024-01-05", "Modality": "CT", "Server": "CF"}
            for n in range(12)]
    job = RetrievalJob.objects.get(pk=RetrievalJob.from_case_list(
        intake.read_case_list(intake.rows_to_csv(rows), user=None), start=False).pk)
    first = job.items.order_by("line").first()
    runner.run_item(first._meta.label, first.pk)  # one worker's session drives the job's rows
    items = list(job.items.all())
    assert [i.status for i in items] == ["failed"] * 12
    assert all("No study on CF matches line" in i.error for i in items)
    assert counting_pacs.finds == 12 and counting_pacs.opened == 1
