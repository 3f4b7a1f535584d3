"""C-MOVE and C-GET from the real Orthanc into this layer, and the overall retrieve timeout."""
import time

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelMove

from apps.dicom import dimse
from apps.dicom.errors import DicomTimeout, DimseFailure
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.scp import StorageSCP
from tests.pacs import Collector, dataset_part, slow_retrieve_answers


@pytest.fixture
def move_destination(orthanc):
    """Our Storage SCP on a free port, declared in Orthanc as C-MOVE destination MOVEDEST."""
    received = Collector()
    with StorageSCP(LocalAE(ae_title="MOVEDEST", port=0), received) as scp:
        orthanc.add_modality("MOVEDEST", "MOVEDEST", scp.port)
        yield received


def test_c_move_arrives_complete_with_its_move_originator(orthanc, orthanc_dataset, move_destination):
    study = orthanc_dataset["studies"][1]
    expected = orthanc.study_instances(study["StudyInstanceUID"])
    result = dimse.move(orthanc.peer(), LocalAE(ae_title="MOVER", port=0), {"StudyInstanceUID": study["StudyInstanceUID"]},
                        "MOVEDEST", message_id=321)
    assert (result.completed, result.failed, result.remaining, result.status) == (len(expected), 0, 0, 0x0000)
    assert result.message_id == 321
    received = move_destination.instances
    assert {i.sop_instance_uid for i in received} == expected and len(received) == len(expected)
    for instance in received:
        assert instance.move_originator_ae == "MOVER" and instance.move_originator_message_id == 321
        assert instance.calling_ae == "ORTHANC"
        ds = pydicom.dcmread(DicomBytesIO(instance.data))
        assert instance.data[128:132] == b"DICM" and ds.SOPInstanceUID == instance.sop_instance_uid
        assert ds.StudyInstanceUID == study["StudyInstanceUID"]
        assert ds.file_meta.TransferSyntaxUID == instance.transfer_syntax_uid


def test_received_bytes_are_the_stored_dataset_unchanged(orthanc, orthanc_dataset, move_destination):
    study = orthanc_dataset["studies"][0]
    dimse.move(orthanc.peer(), LocalAE(ae_title="MOVER", port=0), {"StudyInstanceUID": study["StudyInstanceUID"]},
               "MOVEDEST", message_id=5)
    instance = move_destination.instances[0]
    orthanc_id = orthanc.rest("POST", "/tools/lookup", content=instance.sop_instance_uid).json()[0]["ID"]
    stored = orthanc.rest("GET", f"/instances/{orthanc_id}/file").content
    assert dataset_part(instance.data) == dataset_part(stored)


def test_one_association_serves_find_then_move(orthanc, orthanc_dataset, move_destination):
    patient = orthanc_dataset["studies"][4]["PatientID"]
    with dimse.associate(orthanc.peer(), LocalAE(ae_title="MOVER", port=0), purpose="query") as assoc:
        studies = assoc.find("STUDY", {"PatientID": patient, "StudyInstanceUID": ""})
        results = [assoc.move({"StudyInstanceUID": s.StudyInstanceUID}, "MOVEDEST", message_id=n + 1)
                   for n, s in enumerate(studies)]
    assert len(studies) == 2 and [r.completed for r in results] == [5, 5]
    by_message = {}
    for instance in move_destination.instances:
        by_message.setdefault(instance.move_originator_message_id, set()).add(instance.sop_instance_uid)
    assert by_message == {n + 1: orthanc.study_instances(s.StudyInstanceUID) for n, s in enumerate(studies)}


def test_c_get_hands_every_instance_to_the_callback(orthanc, orthanc_dataset):
    study = orthanc_dataset["studies"][3]
    expected = orthanc.study_instances(study["StudyInstanceUID"])
    received = Collector()
    result = dimse.get(orthanc.peer(), LocalAE(ae_title="GETTER", port=0), {"StudyInstanceUID": study["StudyInstanceUID"]},
                       received, message_id=9)
    assert (result.completed, result.failed, result.status, result.message_id) == (len(expected), 0, 0x0000, 9)
    assert {i.sop_instance_uid for i in received.instances} == expected
    assert all(i.calling_ae == "ORTHANC" and pydicom.dcmread(DicomBytesIO(i.data)).SOPInstanceUID == i.sop_instance_uid
               for i in received.instances)


def test_c_get_counts_instances_the_callback_could_not_keep_as_failed(orthanc, orthanc_dataset):
    study = orthanc_dataset["studies"][5]

    def disk_full(instance):
        raise OSError(28, "No space left on device")

    result = dimse.get(orthanc.peer(), LocalAE(ae_title="GETTER", port=0), {"StudyInstanceUID": study["StudyInstanceUID"]},
                       disk_full)
    assert result.completed == 0 and result.failed == 5
    assert result.status == 0xA702  # Orthanc: "unable to perform sub-operations"; a result, not an exception
    assert set(result.failed_sop_instance_uids) == orthanc.study_instances(study["StudyInstanceUID"])


def test_c_move_to_an_undeclared_destination_says_so(orthanc, orthanc_dataset):
    study = orthanc_dataset["studies"][0]
    with pytest.raises(DimseFailure) as caught:
        dimse.move(orthanc.peer(), LocalAE(ae_title="MOVER", port=0), {"StudyInstanceUID": study["StudyInstanceUID"]},
                   "NOBODY")
    message = str(caught.value)
    assert caught.value.status == 0xC000 and "0xC000" in message
    assert "NOBODY" in message and "declared" in message and study["StudyInstanceUID"] in message


@pytest.fixture
def slow_pacs():
    """An in-process Q/R SCP whose C-MOVE sends one instance every 0.5 s and honours C-CANCEL."""
    seen = {"cancelled": False}
    destination = {}

    def on_move(event):
        yield destination["address"], destination["port"]
        yield from slow_retrieve_answers(event, seen)

    ae = AE(ae_title="SLOWPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)])
    received = Collector()
    with StorageSCP(LocalAE(ae_title="MOVEDEST", port=0), received) as scp:
        destination.update(address="127.0.0.1", port=scp.port)
        yield RemoteAE(ae_title="SLOWPACS", host="127.0.0.1", port=server.server_address[1], name="SLOW",
                       retrieve_timeout=2), seen, received
    server.shutdown()


def test_a_move_beyond_the_retrieve_timeout_is_cancelled_and_reported(slow_pacs):
    peer, seen, received = slow_pacs
    started = time.monotonic()
    with pytest.raises(DicomTimeout) as caught:
        dimse.move(peer, LocalAE(ae_title="MOVER", port=0), {"StudyInstanceUID": "1.2.3.4"}, "MOVEDEST")
    elapsed = time.monotonic() - started
    assert 2 <= elapsed < 2 + 3
    message = str(caught.value)
    assert "study 1.2.3.4" in message and "2 s" in message and "cancelled" in message
    assert caught.value.retriable
    time.sleep(0.6)  # the SCP notices the C-CANCEL at its next instance
    assert seen["cancelled"], "the PACS received a C-CANCEL"
    assert 1 <= len(received.instances) < 10
