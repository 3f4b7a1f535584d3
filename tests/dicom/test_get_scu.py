"""The C-GET SCU (wire/get_scu.py) against the real Orthanc: every instance, byte for byte as Orthanc holds
it, the counts and the errors, and the overall retrieve timeout against a slow in-process PACS."""
import time

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

from apps.dicom.errors import AssociationRejected, ConnectionFailed, DicomTimeout, DimseFailure
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire.get_scu import c_get
from tests.pacs import Collector, dataset_part, free_ports, slow_retrieve_answers

LOCAL = LocalAE(ae_title="LEANGET", port=0)


def test_a_study_arrives_complete_and_byte_identical_to_what_orthanc_holds(orthanc, orthanc_dataset):
    study_uid = orthanc_dataset["studies"][2]["StudyInstanceUID"]
    held = {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in orthanc.find("Instance", {"StudyInstanceUID": study_uid})}
    received = Collector()
    result = c_get(orthanc.peer(), LOCAL, {"StudyInstanceUID": study_uid}, received, message_id=7)

    assert (result.completed, result.failed, result.warning, result.remaining) == (len(held), 0, 0, 0)
    assert (result.status, result.message_id, result.failed_sop_instance_uids) == (0x0000, 7, [])
    assert len(received.instances) == len(held) and {i.sop_instance_uid for i in received.instances} == set(held)
    for mine in received.instances:
        stored = orthanc.rest("GET", f"/instances/{held[mine.sop_instance_uid]}/file").content
        assert dataset_part(mine.data) == dataset_part(stored)
        header = pydicom.dcmread(DicomBytesIO(stored), stop_before_pixels=True)
        assert (mine.sop_class_uid, mine.transfer_syntax_uid, mine.calling_ae) == (
            header.SOPClassUID, header.file_meta.TransferSyntaxUID, "ORTHANC")
        assert pydicom.dcmread(DicomBytesIO(mine.data)).SOPInstanceUID == mine.sop_instance_uid


def test_an_unknown_study_fails_rather_than_succeeding_empty(orthanc):
    """Orthanc answers a C-GET matching nothing with 0xC000 and no sub-operations: no instance came, and
    the SCU says so with a DimseFailure rather than an empty success."""
    received = Collector()
    with pytest.raises(DimseFailure) as caught:
        c_get(orthanc.peer(), LOCAL, {"StudyInstanceUID": generate_uid()}, received)
    assert caught.value.status == 0xC000 and "ORTHANC" in str(caught.value)
    assert received.instances == []


def test_a_wrong_called_ae_title_is_rejected(orthanc):
    with pytest.raises(AssociationRejected) as caught:
        c_get(orthanc.peer(ae_title="NOTORTHANC"), LOCAL, {"StudyInstanceUID": generate_uid()}, Collector())
    assert "NOTORTHANC" in str(caught.value)


def test_a_closed_port_is_a_connection_failure():
    (port,) = free_ports(1)
    peer = RemoteAE(ae_title="NOBODY", host="127.0.0.1", port=port, connect_timeout=2)
    with pytest.raises(ConnectionFailed) as caught:
        c_get(peer, LOCAL, {"StudyInstanceUID": generate_uid()}, Collector())
    assert caught.value.retriable and "refused" in str(caught.value)


def test_instances_the_callback_cannot_keep_fail_and_the_get_still_completes(orthanc, orthanc_dataset):
    study_uid = orthanc_dataset["studies"][4]["StudyInstanceUID"]
    expected = orthanc.study_instances(study_uid)
    kept = Collector()
    calls = []

    def first_fails(instance):
        calls.append(instance.sop_instance_uid)
        if len(calls) == 1:
            raise RuntimeError("receiver bug")
        return kept(instance)

    result = c_get(orthanc.peer(), LOCAL, {"StudyInstanceUID": study_uid}, first_fails)
    assert (result.completed, result.failed) == (len(expected) - 1, 1)
    assert result.failed_sop_instance_uids == calls[:1]
    assert {i.sop_instance_uid for i in kept.instances} == expected - set(calls[:1])


@pytest.fixture
def slow_get_pacs():
    """An in-process Q/R SCP whose C-GET sends one instance every 0.5 s and honours C-CANCEL."""
    seen = {"cancelled": False}

    def on_get(event):
        yield from slow_retrieve_answers(event, seen)

    ae = AE(ae_title="SLOWPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    for cx in StoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ExplicitVRLittleEndian, scu_role=False, scp_role=True)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_GET, on_get)])
    yield RemoteAE(ae_title="SLOWPACS", host="127.0.0.1", port=server.server_address[1], retrieve_timeout=2), seen
    server.shutdown()


def test_a_get_beyond_the_retrieve_timeout_is_cancelled_and_reported(slow_get_pacs):
    peer, seen = slow_get_pacs
    received = Collector()
    started = time.monotonic()
    with pytest.raises(DicomTimeout) as caught:
        c_get(peer, LOCAL, {"StudyInstanceUID": generate_uid()}, received)
    assert time.monotonic() - started < 6
    assert seen["cancelled"]
    assert 2 <= len(received.instances) <= 5 and "cancelled" in str(caught.value)
