"""A PACS that stores the first photo and answers the second with a failure status: the answer is 502
PACS_REJECTED and says which photo was stored; a retry sends only the one that is missing."""
import threading

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import SecondaryCaptureImageStorage

from apps.jobs.runner import run_inline
from apps.photos.models import PhotoSend, PhotoUpload
from apps.servers.models import DicomServer
from tests.photos.conftest import post_photos

pytestmark = pytest.mark.django_db


class PickyPacs:
    """Storage SCP (pynetdicom, in process) that answers 0xA700 (out of resources) to chosen instance numbers."""

    def __init__(self):
        self.refuse, self.stored, self._lock = {2}, [], threading.Lock()
        ae = AE(ae_title="PICKY")
        ae.add_supported_context(SecondaryCaptureImageStorage, ["1.2.840.10008.1.2"])
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self.on_store)])
        self.port = self.server.server_address[1]

    def on_store(self, event):
        ds = event.dataset
        if int(ds.InstanceNumber) in self.refuse:
            return 0xA700
        with self._lock:
            self.stored.append(str(ds.SOPInstanceUID))
        return 0x0000


@pytest.fixture
def picky_pacs():
    pacs = PickyPacs()
    yield pacs
    pacs.server.shutdown()


def test_the_answer_names_what_was_stored_and_a_retry_sends_only_the_rest(api, photo_settings, picky_pacs,
                                                                          rotated_jpeg, alpha_png):
    DicomServer.objects.create(name="PICKY", ae_title="PICKY", host="127.0.0.1", port=picky_pacs.port, retries=0)
    response = post_photos(api, [rotated_jpeg, alpha_png], server="PICKY")
    assert response.status_code == 502, response.content
    body = response.json()
    assert body["code"] == "PACS_REJECTED" and "refused 1 of 2 photos" in body["message"]
    first, second = body["instances"]
    assert (first["status"], second["status"]) == ("success", "failed")
    assert "0xA700" in second["message"] or "resources" in second["message"].lower()
    assert picky_pacs.stored == [first["sopInstanceUID"]]

    picky_pacs.refuse = set()
    upload = PhotoUpload.objects.get(pk=body["upload"])
    PhotoSend.objects.filter(job=upload).update(status="pending")
    assert run_inline(upload).items.get().status == "succeeded"
    assert picky_pacs.stored == [first["sopInstanceUID"], second["sopInstanceUID"]]  # the first is not sent twice
