"""The socket-level C-FIND SCU (apps/dicom/wire/find_scu.py, a retrieval row's queries) against the real
Orthanc: the same matches as pynetdicom's C-FIND at study, series and image level; the limit and its
C-CANCEL, failure statuses, a silent PACS and a PACS answering another message, each the typed error
dimse's find raises; and association reuse in a batch."""
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from apps.dicom import dimse, reuse
from apps.dicom.errors import AssociationAborted, DicomTimeout, DimseFailure
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire import commands, pdu
from apps.dicom.wire.find_scu import find_association
from tests.dicom.test_find import STUDY_KEYS

LOCAL = LocalAE(ae_title="LEANFIND", port=0)


def as_dicts(matches):
    return sorted(({e.keyword: str(e.value) for e in m} for m in matches), key=lambda d: sorted(d.items()))


def test_study_series_and_image_matches_are_those_of_pynetdicom(orthanc, orthanc_dataset):
    study = orthanc_dataset["studies"][0]
    queries = [("STUDY", {**STUDY_KEYS, "PatientID": study["PatientID"]}),
               ("SERIES", {"StudyInstanceUID": study["StudyInstanceUID"], "SeriesInstanceUID": "", "Modality": "",
                           "NumberOfSeriesRelatedInstances": ""}),
               ("IMAGE", {"StudyInstanceUID": study["StudyInstanceUID"], "SOPInstanceUID": ""}),
               ("STUDY", {**STUDY_KEYS, "PatientID": "NO-SUCH-PATIENT"})]
    with find_association(orthanc.peer(), LOCAL) as lean, \
            dimse.associate(orthanc.peer(), LOCAL, purpose="query") as reference:
        for level, query in queries:
            assert as_dicts(lean.find(level, query)) == as_dicts(reference.find(level, query)), level
        images = lean.find("IMAGE", queries[2][1])
    assert {i.SOPInstanceUID for i in images} == orthanc.study_instances(study["StudyInstanceUID"])
    assert lean.closed  # released at the end of the block


def test_a_limit_keeps_one_more_and_cancels_the_rest(endless_pacs):
    peer, seen = endless_pacs
    with find_association(peer, LOCAL) as assoc:
        matches = assoc.find("STUDY", {"StudyInstanceUID": ""}, limit=3)
        assert [m.StudyInstanceUID for m in matches] == ["1.2.3.0", "1.2.3.1", "1.2.3.2", "1.2.3.3"]
        assert seen["cancelled"] and seen["sent"] < 50
        assert assoc.find("STUDY", {"StudyInstanceUID": ""}, limit=0)[0].StudyInstanceUID == "1.2.3.0"  # usable


def answering(handler):
    ae = AE(ae_title="ODDFIND")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    return ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, handler)])


def test_a_failure_status_is_a_dimse_failure_naming_it_and_the_association_is_not_reused():
    def refuse(event):
        yield 0xA700, None  # out of resources

    server = answering(refuse)
    peer = RemoteAE(ae_title="ODDFIND", host="127.0.0.1", port=server.server_address[1], name="ODD")
    try:
        with reuse.reusing_associations() as pool:
            with pytest.raises(DimseFailure, match="failure status 0xA700") as caught:
                with find_association(peer, LOCAL) as assoc:
                    assoc.find("STUDY", {"StudyInstanceUID": ""})
            assert caught.value.status == 0xA700
            with find_association(peer, LOCAL):
                pass
            assert (pool.opened, pool.reused) == (2, 0), "a failed request's association is not lent again"
    finally:
        server.shutdown()


def test_a_pacs_silent_past_the_query_timeout_is_a_timeout():
    def silent(event):
        time.sleep(3)
        yield 0x0000, None

    server = answering(silent)
    peer = RemoteAE(ae_title="ODDFIND", host="127.0.0.1", port=server.server_address[1], name="ODD",
                    query_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DicomTimeout, match="did not answer the C-FIND at STUDY level within 0.5 s"):
            with find_association(peer, LOCAL) as assoc:
                assoc.find("STUDY", {"StudyInstanceUID": ""})
    finally:
        server.shutdown()
    assert time.monotonic() - started < 2.5


def test_a_response_to_another_message_aborts_the_association():
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        conn, _ = listener.accept()
        with conn:
            rq = pdu.parse_associate_rq(pdu.read_pdu(conn, pdu.MAX_ASSOCIATE_RQ)[1])
            conn.sendall(pdu.associate_ac(rq, [(c.context_id, 0, c.transfer_syntaxes[0]) for c in rq.contexts], 0))
            pdu.read_pdu(conn, 1 << 20), pdu.read_pdu(conn, 1 << 20)  # the request and its identifier
            conn.sendall(pdu.p_data(1, True, commands.encode({
                commands.AFFECTED_SOP_CLASS: StudyRootQueryRetrieveInformationModelFind,
                commands.COMMAND_FIELD: commands.C_FIND_RSP, commands.RESPONDING_TO: 99,
                commands.DATASET_TYPE: commands.NO_DATASET, commands.STATUS: 0x0000}), 0))
            time.sleep(1)

    threading.Thread(target=serve, daemon=True).start()
    peer = RemoteAE(ae_title="RAW", host="127.0.0.1", port=listener.getsockname()[1], name="RAW")
    try:
        with pytest.raises(AssociationAborted, match="broke the DICOM protocol"):
            with find_association(peer, LOCAL) as assoc:
                assoc.find("STUDY", {"StudyInstanceUID": ""})
    finally:
        listener.close()


def test_in_a_batch_one_association_serves_every_query(orthanc, orthanc_dataset):
    study = orthanc_dataset["studies"][1]
    with reuse.reusing_associations() as pool:
        for _ in range(4):
            with find_association(orthanc.peer(), LOCAL) as assoc:
                assert [m.StudyInstanceUID for m in assoc.find("STUDY", {"StudyInstanceUID": study["StudyInstanceUID"]})
                        ] == [study["StudyInstanceUID"]]
        assert (pool.opened, pool.reused) == (1, 3)


def test_a_query_dataset_is_left_alone(orthanc):
    query = Dataset()
    query.PatientID, query.StudyInstanceUID = "NO-SUCH-PATIENT", ""
    with find_association(orthanc.peer(), LOCAL) as assoc:
        assert assoc.find("STUDY", query) == []
    assert "QueryRetrieveLevel" not in query
