"""The C-MOVE requestor (wire/move_scu.py) against the real Orthanc: every instance, the counts, the
statuses and the errors, series-level moves, and cancel (the stop event) and the overall retrieve timeout
against a slow in-process PACS."""
import dataclasses
import socket
import threading
import time

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

from apps.dicom import dimse
from apps.dicom.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    DicomTimeout,
    DimseFailure,
    RetrieveCanceled,
)
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire import commands, pdu
from apps.dicom.wire.move_scu import c_move
from apps.dicom.wire.storage_scp import LeanStorageSCP
from tests.fixtures_common import unused_port
from tests.pacs import dataset_part, free_ports, slow_retrieve_answers

LOCAL = LocalAE(ae_title="LEANMOVE", port=0)


class Destination:
    """A Storage SCP declared in Orthanc as a C-MOVE destination; records every C-STORE it gets."""

    def __init__(self, orthanc, ae_title: str):
        self.ae_title, self.port = ae_title, unused_port()
        self.instances, self.lock = [], threading.Lock()
        orthanc.add_modality(ae_title, ae_title, self.port)
        self.scp = LeanStorageSCP(LocalAE(ae_title=ae_title, port=self.port), self)

    def __call__(self, instance):
        with self.lock:
            self.instances.append(instance)
        return 0x0000

    def take(self):
        with self.lock:
            taken, self.instances = self.instances, []
        return taken


@pytest.fixture(scope="module")
def destination(orthanc):
    dest = Destination(orthanc, "MOVEDEST")
    dest.scp.start()
    yield dest
    dest.scp.stop()


def test_a_study_moves_complete_with_its_counts_and_our_request_named_as_originator(orthanc, orthanc_dataset,
                                                                                   destination):
    study_uid = orthanc_dataset["studies"][2]["StudyInstanceUID"]
    expected = orthanc.study_instances(study_uid)
    destination.take()
    result = c_move(orthanc.peer(), LOCAL, {"StudyInstanceUID": study_uid}, destination.ae_title, message_id=4242)
    arrived = destination.take()

    assert (result.completed, result.failed, result.warning, result.remaining) == (len(expected), 0, 0, 0)
    assert (result.status, result.message_id, result.failed_sop_instance_uids) == (0x0000, 4242, [])
    assert [i.sop_instance_uid for i in arrived] and {i.sop_instance_uid for i in arrived} == expected
    assert len(arrived) == len(expected)
    # Orthanc names our request in every C-STORE: the receiver keys staging by it
    assert {(i.move_originator_ae, i.move_originator_message_id) for i in arrived} == {("LEANMOVE", 4242)}
    orthanc_id = orthanc.rest("POST", "/tools/lookup", content=arrived[0].sop_instance_uid).json()[0]["ID"]
    stored = orthanc.rest("GET", f"/instances/{orthanc_id}/file").content
    assert dataset_part(arrived[0].data) == dataset_part(stored)  # the bytes Orthanc holds, unchanged


def test_a_series_level_move_brings_that_series_only(orthanc, orthanc_dataset, destination):
    study_uid = orthanc_dataset["studies"][3]["StudyInstanceUID"]
    (series,) = dimse.find(orthanc.peer(), LOCAL, "SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "",
                                                             "NumberOfSeriesRelatedInstances": ""})
    destination.take()
    result = c_move(orthanc.peer(), LOCAL, {"StudyInstanceUID": study_uid,
                                            "SeriesInstanceUID": str(series.SeriesInstanceUID)},
                    destination.ae_title, level="SERIES", message_id=9)
    arrived = destination.take()
    assert result.completed == len(arrived) == int(series.NumberOfSeriesRelatedInstances) > 0
    assert {i.identity.series for i in arrived} == {str(series.SeriesInstanceUID)}


def test_an_unknown_destination_fails_naming_it(orthanc, orthanc_dataset):
    study_uid = orthanc_dataset["studies"][0]["StudyInstanceUID"]
    with pytest.raises(DimseFailure) as caught:
        c_move(orthanc.peer(), LOCAL, {"StudyInstanceUID": study_uid}, "NOSUCHNODE")
    assert caught.value.status == 0xC000  # what Orthanc answers for a destination it does not know
    assert "NOSUCHNODE is declared on the PACS" in str(caught.value)


def test_an_unknown_study_is_refused_and_moves_nothing(orthanc, destination):
    destination.take()
    with pytest.raises(DimseFailure) as caught:  # Orthanc refuses a move of nothing; the row reports it
        c_move(orthanc.peer(), LOCAL, {"StudyInstanceUID": generate_uid()}, destination.ae_title)
    assert caught.value.status == 0xC000 and "ORTHANC" in str(caught.value)
    assert destination.take() == []


def test_a_wrong_called_ae_title_is_rejected(orthanc):
    with pytest.raises(AssociationRejected) as caught:
        c_move(orthanc.peer(ae_title="NOTORTHANC"), LOCAL, {"StudyInstanceUID": generate_uid()}, "MOVEDEST")
    assert "NOTORTHANC" in str(caught.value)


def test_a_closed_port_is_a_connection_failure():
    (port,) = free_ports(1)
    peer = RemoteAE(ae_title="NOBODY", host="127.0.0.1", port=port, connect_timeout=2)
    with pytest.raises(ConnectionFailed) as caught:
        c_move(peer, LOCAL, {"StudyInstanceUID": generate_uid()}, "MOVEDEST")
    assert caught.value.retriable and "refused" in str(caught.value)


@pytest.fixture
def slow_move_pacs():
    """An in-process Q/R SCP whose C-MOVE sends one instance every 0.5 s to a sink and honours C-CANCEL."""
    seen = {"cancelled": False}
    sink = LeanStorageSCP(LocalAE(ae_title="SINK", port=0), lambda instance: 0x0000).start()

    def on_move(event):
        yield "127.0.0.1", sink.bound_port()
        yield from slow_retrieve_answers(event, seen)

    ae = AE(ae_title="SLOWPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    for cx in StoragePresentationContexts:
        ae.add_requested_context(cx.abstract_syntax)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)])
    yield RemoteAE(ae_title="SLOWPACS", host="127.0.0.1", port=server.server_address[1], retrieve_timeout=2), seen
    server.shutdown()
    sink.stop()


def test_a_move_beyond_the_retrieve_timeout_is_cancelled_and_reported(slow_move_pacs):
    peer, seen = slow_move_pacs
    started = time.monotonic()
    with pytest.raises(DicomTimeout) as caught:
        c_move(peer, LOCAL, {"StudyInstanceUID": generate_uid()}, "SINK")
    assert time.monotonic() - started < 6
    assert seen["cancelled"] and "did not finish within 2 s" in str(caught.value)


def test_the_stop_event_cancels_a_running_move_within_a_second(slow_move_pacs):
    peer, seen = slow_move_pacs
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RetrieveCanceled) as caught:
        c_move(dataclasses.replace(peer, retrieve_timeout=60), LOCAL, {"StudyInstanceUID": generate_uid()},
               "SINK", stop=stop)
    assert time.monotonic() - started < 2.5
    assert seen["cancelled"] and "cancelled on request" in str(caught.value)


class RawMovePacs:
    """A 'PACS' on a raw socket that accepts the C-MOVE context, then answers the C-MOVE-RQ as told:
    "wrong-id" responds to another message, "abort" sends A-ABORT, "close" hangs up, "silent" sends one
    pending response and then nothing (not even to the C-CANCEL), "burst" sends 1,000 pending responses
    at once and the final one a byte at a time, then answers the A-RELEASE-RQ."""

    def __init__(self, mode: str):
        self.mode, self.released = mode, False
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        conn, _ = self.server.accept()
        try:
            rq = pdu.parse_associate_rq(pdu.read_pdu(conn, pdu.MAX_ASSOCIATE_RQ)[1])
            conn.sendall(pdu.associate_ac(rq, [(c.context_id, 0, c.transfer_syntaxes[0]) for c in rq.contexts], 0))
            command, pdvs = None, []
            while command is None or not any(not is_command for _, is_command, _, _ in pdvs):
                pdvs = list(pdu.pdvs(pdu.read_pdu(conn, 1 << 20)[1]))
                command = command or next((commands.decode(bytes(d)) for _, c, _, d in pdvs if c), None)
            if self.answer(conn, commands.us(command, commands.MESSAGE_ID)) != "released":
                time.sleep(6)  # longer than the retrieve timeout and the cancel grace together
        except OSError:  # the requestor gave up on this misbehaving peer: that is the point
            pass
        finally:
            conn.close()

    def answer(self, conn, message_id: int):
        def response(responding_to, status, remaining=5, completed=0):
            return pdu.p_data(1, True, commands.encode({
                commands.AFFECTED_SOP_CLASS: StudyRootQueryRetrieveInformationModelMove,
                commands.COMMAND_FIELD: commands.C_MOVE_RSP, commands.RESPONDING_TO: responding_to,
                commands.DATASET_TYPE: commands.NO_DATASET, commands.STATUS: status,
                commands.REMAINING: remaining, commands.COMPLETED: completed}), 0)

        if self.mode == "burst":  # more than the requestor's 64 KB read buffer, then a trickle
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(b"".join(response(message_id, 0xFF00, 1000 - n, n) for n in range(1000)))
            final = response(message_id, 0x0000, 0, 1000)
            for n in range(len(final)):
                conn.sendall(final[n:n + 1])
                time.sleep(0.001)
            if pdu.read_pdu(conn, 1 << 20)[0] == pdu.RELEASE_RQ:
                self.released = True
                conn.sendall(pdu.release_rp())
                return "released"

        if self.mode == "wrong-id":
            conn.sendall(response(message_id + 7, 0xFF00))
        elif self.mode == "abort":
            conn.sendall(pdu.abort(2, 0))
        elif self.mode == "close":
            conn.close()
        elif self.mode == "silent":
            conn.sendall(response(message_id, 0xFF00))

    def peer(self):
        return RemoteAE(ae_title="RAW", host="127.0.0.1", port=self.server.getsockname()[1], connect_timeout=1.0,
                        retrieve_timeout=1.0)


def test_a_burst_of_pending_responses_and_a_final_one_in_single_bytes_are_read_whole_and_released():
    """The requestor reads pending responses through a buffer, in batches (pdu.BufferedReads): what
    crosses the buffer's end, or arrives a byte at a time, must come out the same."""
    pacs = RawMovePacs("burst")
    try:
        result = c_move(pacs.peer(), LOCAL, {"StudyInstanceUID": generate_uid()}, "MOVEDEST")
    finally:
        pacs.server.close()
    assert (result.status, result.completed, result.remaining, result.failed) == (0x0000, 1000, 0, 0)
    assert pacs.released  # the A-RELEASE-RP was read through the same buffer


@pytest.mark.parametrize("mode, error, words", [
    ("wrong-id", AssociationAborted, "broke the DICOM protocol"),
    ("abort", AssociationAborted, "aborted the association during the C-MOVE"),
    ("close", AssociationAborted, "dropped the association"),
    ("silent", DicomTimeout, "did not finish within 1 s"),
])
def test_a_broken_pacs_is_a_typed_error_never_a_hang(mode, error, words):
    pacs = RawMovePacs(mode)
    started = time.monotonic()
    try:
        with pytest.raises(error, match=words):
            c_move(pacs.peer(), LOCAL, {"StudyInstanceUID": generate_uid()}, "MOVEDEST")
    finally:
        pacs.server.close()
    assert time.monotonic() - started < 5


def test_pending_responses_are_read_in_batches_that_never_wait_past_the_sub_operations_still_to_come():
    """0.2 ms per sub-operation the PACS still has to do (at most 10 ms): the final response cannot come
    sooner than that from a PACS sending fewer than 5,000 instances a second, so it is not seen later."""
    from apps.dicom.wire.move_scu import _MoveAssociation

    assoc = _MoveAssociation(RemoteAE(ae_title="X", host="127.0.0.1", port=1), LOCAL, 1)
    waits = {}
    for remaining in (0, 1, 10, 49, 50, 10_000):
        assoc.result.remaining = remaining
        waits[remaining] = assoc.batch_delay()
    assert waits == pytest.approx({0: 0.0002, 1: 0.0002, 10: 0.002, 49: 0.0098, 50: 0.010, 10_000: 0.010})
