"""Peers shared by the tests of both C-FIND clients (pynetdicom's in apps.dicom.dimse, for browsing, and
wire/find_scu.py), and the huge instance the large-file tests read (test_frames.py, test_huge_transforms.py)."""
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from apps.dicom.demo.huge import write_huge_instance
from apps.dicom.peers import RemoteAE


@pytest.fixture
def endless_pacs():
    """An in-process Q/R SCP with a thousand matching studies, one every 10 ms, that honours C-CANCEL."""
    seen = {"sent": 0, "cancelled": False}

    def on_find(event):
        for n in range(1000):
            if event.is_cancelled:
                seen["cancelled"] = True
                yield 0xFE00, None
                return
            match = Dataset()
            match.QueryRetrieveLevel, match.StudyInstanceUID = "STUDY", f"1.2.3.{n}"
            seen["sent"] += 1
            yield 0xFF00, match
            time.sleep(0.01)

    ae = AE(ae_title="ENDLESS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    yield RemoteAE(ae_title="ENDLESS", host="127.0.0.1", port=server.server_address[1], name="ENDLESS"), seen
    server.shutdown()


@pytest.fixture(scope="session")
def huge(tmp_path_factory):
    """A 150 MB multi-frame instance, generated once and only read: (its path, its dataset without pixels)."""
    path = tmp_path_factory.mktemp("huge") / "huge.dcm"
    return path, write_huge_instance(path, 150, rows=512, cols=512)
