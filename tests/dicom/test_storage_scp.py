"""The socket-level Storage SCP (apps/dicom/wire/storage_scp.py) against real peers (pynetdicom, DCMTK storescu and
storescp) and against broken ones speaking raw PDUs: bytes as received, the statuses of
wire/received.deliver, contexts refused with the right result, aborts that leave nothing half-written."""
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, _config
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind, Verification
from pynetdicom.transport import AddressInformation

from apps.dicom import dimse, files, store
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import AssociationRejected
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.staging import MoveStaging
from apps.dicom.syntaxes import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from apps.dicom.wire.storage_scp import LeanStorageSCP
from apps.retrieval.receiving import staging_writer
from tests.pacs import dataset_part, port_open
from tests.servers.hostile import recv_pdu

LOCAL = LocalAE(ae_title="SENDER", port=0)
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# real files in many SOP classes and transfer syntaxes (JPEG, JPEG 2000, JPEG-LS, RLE, deflate, big endian)
REAL_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
              "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm",
              "JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm", "image_dfl.dcm", "rtdose.dcm",
              "rtplan.dcm", "waveform_ecg.dcm", "reportsi.dcm", "examples_palette.dcm"]


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lean")
    write_dataset(folder, patients=3, studies=1, instances=3, modalities=("CT", "MR", "US"), seed=5, id_prefix="LEAN")
    return sorted(folder.rglob("*.dcm"))


class Kept:
    def __init__(self):
        self.instances, self.error, self.lock = [], None, threading.Lock()

    def __call__(self, instance):
        if self.error is not None:
            raise self.error
        with self.lock:
            self.instances.append(instance)
        return 0x0000

    def by_uid(self):
        return {i.sop_instance_uid: i for i in self.instances}


@pytest.fixture
def scp():
    kept = Kept()
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), kept) as server:
        server.kept = kept
        server.peer = RemoteAE(ae_title="LEAN", host="127.0.0.1", port=server.port)
        yield server


def test_pynetdicom_sends_real_files_in_every_syntax_and_the_datasets_arrive_byte_identical(scp):
    paths = [PYDICOM_FILES / name for name in REAL_FILES]
    report = store.store_files(scp.peer, LOCAL, paths)
    assert not report.failed and report.landed == len(paths)
    # some files are one instance in several syntaxes: they arrive in the order sent
    for path, instance in zip(paths, scp.kept.instances):
        info = files.inspect(path)
        assert instance.transfer_syntax_uid == info.transfer_syntax_uid
        assert instance.sop_class_uid == info.sop_class_uid
        assert dataset_part(instance.data) == dataset_part(path.read_bytes()), path.name
        assert files.inspect(instance.data).sop_instance_uid == info.sop_instance_uid  # a valid Part-10 file


def test_dcmtk_storescu_to_lean_and_to_storescp_gives_the_same_dataset_bytes(scp, synthetic_files, tmp_path):
    env = {**os.environ, "TCP_NODELAY": "1"}
    sent = subprocess.run(["storescu", "-aet", "DCMTKSCU", "-aec", "LEAN", "127.0.0.1", str(scp.port),
                           *map(str, synthetic_files)], env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    out = tmp_path / "storescp"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storescp = subprocess.Popen(["storescp", "-aet", "REF", "-od", str(out), str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_open(port):
            time.sleep(0.05)
        sent = subprocess.run(["storescu", "-aec", "REF", "127.0.0.1", str(port), *map(str, synthetic_files)],
                              env=env, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
    finally:
        storescp.terminate()
        storescp.wait(10)
    by_uid = scp.kept.by_uid()
    reference = sorted(out.iterdir())
    assert len(reference) == len(synthetic_files) == len(by_uid)
    for path in reference:
        uid = files.inspect(path).sop_instance_uid
        assert dataset_part(by_uid[uid].data) == dataset_part(path.read_bytes())
        assert by_uid[uid].calling_ae == "DCMTKSCU"


@pytest.mark.parametrize("error, status", [(OSError(28, "No space left on device"), 0xA700),
                                           (RuntimeError("bug"), 0xC000)])
def test_a_failing_callback_answers_its_status_and_the_association_goes_on(scp, synthetic_files, error, status):
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="LEAN")
    ct = [p for p in synthetic_files if files.read_meta(p).sop_class_uid == CTImageStorage]
    try:
        scp.kept.error = error
        failed = assoc.send_c_store(ct[0])
        scp.kept.error = None
        good = assoc.send_c_store(ct[1])
    finally:
        assoc.release()
    assert failed.Status == status and good.Status == 0x0000
    assert [i.sop_instance_uid for i in scp.kept.instances] == [files.read_meta(ct[1]).sop_instance_uid]


def test_a_truncated_dataset_is_refused_as_malformed_before_the_callback(scp, synthetic_files, tmp_path, monkeypatch):
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # pynetdicom sends the file's bytes unchecked
    path = tmp_path / "cut.dcm"
    path.write_bytes(synthetic_files[0].read_bytes()[:-4])
    ae = AE(ae_title="BROKEN")
    ae.add_requested_context(files.read_meta(synthetic_files[0]).sop_class_uid, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="LEAN")
    try:
        rsp = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert rsp.Status == 0xC000 and "Malformed" in rsp.ErrorComment
    assert scp.kept.instances == []


def test_a_wrong_called_ae_title_is_rejected_with_its_reason(scp):
    with pytest.raises(AssociationRejected, match="called AE title not recognised"):
        dimse.echo(RemoteAE(ae_title="SOMEONEELSE", host="127.0.0.1", port=scp.port), LOCAL)
    assert dimse.echo(scp.peer, LOCAL) > 0  # and the server still serves


# --- raw PDUs: what a broken or hostile peer can send --------------------------------------------------
def associate_rq(contexts, called="LEAN", max_pdu=16384) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = "RAW", called
    primitive.calling_presentation_address = AddressInformation("127.0.0.1", 1)
    primitive.called_presentation_address = AddressInformation("127.0.0.1", 2)
    for n, cx in enumerate(contexts):
        cx.context_id = 2 * n + 1
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def raw_connection(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_unknown_sop_class_and_unknown_transfer_syntax_are_refused_per_context(scp):
    contexts = [build_context(CTImageStorage, [ImplicitVRLittleEndian]),
                build_context(StudyRootQueryRetrieveInformationModelFind),  # not a storage SOP class
                build_context("1.2.826.0.1.3680043.9999.1", [ExplicitVRLittleEndian]),  # unknown SOP class
                build_context(CTImageStorage, ["1.2.826.0.1.3680043.9999.2"])]  # unknown transfer syntax
    with raw_connection(scp.port) as sock:
        sock.sendall(associate_rq(contexts))
        pdu_type, raw = recv_pdu(sock)
        assert pdu_type == 0x02
        ac = A_ASSOCIATE_AC()
        ac.decode(raw)
        results = {cx.context_id: (cx.result, cx.transfer_syntax) for cx in ac.presentation_context}
        assert results[1] == (0, ImplicitVRLittleEndian)
        assert results[3][0] == 3 and results[5][0] == 3  # abstract syntax not supported
        assert results[7][0] == 4  # transfer syntaxes not supported
        sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ
        assert recv_pdu(sock)[0] == 0x06


def test_a_wrong_application_context_is_rejected_by_the_user(scp):
    raw = bytearray(associate_rq([build_context(Verification)]))
    at = raw.index(b"1.2.840.10008.3.1.1.1")
    raw[at:at + 21] = b"1.2.840.10008.3.1.1.9"
    with raw_connection(scp.port) as sock:
        sock.sendall(raw)
        pdu_type, answer = recv_pdu(sock)
    rj = A_ASSOCIATE_RJ()
    rj.decode(answer)
    assert pdu_type == 0x03 and (rj.result, rj.source, rj.reason_diagnostic) == (1, 1, 2)


@pytest.mark.parametrize("garbage, reason", [
    (b"\x09\x00\x00\x00\x00\x02\x00\x00", 1),  # unknown PDU type: unrecognised PDU
    (b"\x04\x00\x00\x00\x00\x04\x00\x00\x00\x00", 2),  # P-DATA before any association: unexpected PDU
    (b"\x01\x00\x00\x00\x00\x10" + b"\x00" * 16, 6),  # an A-ASSOCIATE-RQ too short for its fixed fields
])
def test_malformed_pdus_get_an_abort_and_the_server_keeps_serving(scp, garbage, reason):
    with raw_connection(scp.port) as sock:
        sock.sendall(garbage)
        pdu_type, raw = recv_pdu(sock)
        assert pdu_type == 0x07 and raw[8:10] == bytes((2, reason))  # source: service provider
        assert sock.recv(1) == b""  # and the connection is closed
    assert dimse.echo(scp.peer, LOCAL) > 0


def p_data(context_id, control, data) -> bytes:
    return struct.pack(">BBLLBB", 4, 0, len(data) + 6, len(data) + 2, context_id, control) + data


def store_command(sop_class, sop_instance, message_id=7) -> bytes:
    def element(tag, value):
        return struct.pack("<HHL", 0, tag, len(value)) + value

    def uid(text):
        raw = text.encode()
        return raw + b"\0" if len(raw) % 2 else raw

    body = (element(0x0002, uid(sop_class)) + element(0x0100, b"\x01\x00") + element(0x0110, struct.pack("<H", message_id))
            + element(0x0700, b"\x00\x00") + element(0x0800, b"\x00\x00") + element(0x1000, uid(sop_instance))
            + element(0x1030, b"MOVER ") + element(0x1031, b"\x2a\x00"))
    return element(0x0000, struct.pack("<L", len(body))) + body


def test_small_fragments_are_reassembled_and_the_move_originator_is_read(scp, synthetic_files):
    info, data = files.read_checked(synthetic_files[0])
    dataset = data[info.dataset_offset:]
    with raw_connection(scp.port) as sock:
        sock.sendall(associate_rq([build_context(info.sop_class_uid, [info.transfer_syntax_uid])]))
        assert recv_pdu(sock)[0] == 0x02
        sock.sendall(p_data(1, 0x03, store_command(info.sop_class_uid, info.sop_instance_uid)))
        pieces = [dataset[i:i + 1000] for i in range(0, len(dataset), 1000)]
        sock.sendall(b"".join(p_data(1, 0x02 if n == len(pieces) - 1 else 0x00, piece)
                              for n, piece in enumerate(pieces)))
        pdu_type, rsp = recv_pdu(sock)
    assert pdu_type == 0x04 and rsp[11] == 0x03  # one command PDV, last fragment
    assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00" in rsp  # (0000,0900) Status 0x0000
    instance = scp.kept.instances[0]
    assert dataset_part(instance.data) == dataset
    assert (instance.move_originator_ae, instance.move_originator_message_id) == ("MOVER", 42)


def test_an_abort_mid_transfer_leaves_no_file_in_staging(tmp_path, synthetic_files):
    staging = MoveStaging(tmp_path / "staging")
    info, data = files.read_checked(synthetic_files[0])
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), staging_writer(staging)) as server:
        with raw_connection(server.port) as sock:
            sock.sendall(associate_rq([build_context(info.sop_class_uid, [info.transfer_syntax_uid])]))
            assert recv_pdu(sock)[0] == 0x02
            sock.sendall(p_data(1, 0x03, store_command(info.sop_class_uid, info.sop_instance_uid)))
            sock.sendall(p_data(1, 0x00, data[info.dataset_offset:info.dataset_offset + 5000]))
            sock.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-ABORT
            assert sock.recv(1) == b""
        with raw_connection(server.port) as sock:  # and a peer that just vanishes mid-dataset
            sock.sendall(associate_rq([build_context(info.sop_class_uid, [info.transfer_syntax_uid])]))
            assert recv_pdu(sock)[0] == 0x02
            sock.sendall(p_data(1, 0x03, store_command(info.sop_class_uid, info.sop_instance_uid)))
            sock.sendall(p_data(1, 0x00, data[info.dataset_offset:info.dataset_offset + 5000]))
        time.sleep(0.2)
    left = [p for p in (tmp_path / "staging").rglob("*") if p.is_file()] if (tmp_path / "staging").exists() else []
    assert left == []


def test_stop_cuts_an_idle_association_after_the_grace_and_frees_the_port():
    server = LeanStorageSCP(LocalAE(ae_title="SHORT", port=0), lambda i: 0).start()
    port = server.port
    idle = raw_connection(port)
    idle.sendall(associate_rq([build_context(Verification)], called="SHORT"))
    assert recv_pdu(idle)[0] == 0x02
    started = time.monotonic()
    server.stop(grace=0.5)
    assert time.monotonic() - started < 5
    assert idle.recv(1) == b""
    idle.close()
    with LeanStorageSCP(LocalAE(ae_title="AGAIN", port=port), lambda i: 0) as again:  # a restart gets the port
        assert dimse.echo(RemoteAE(ae_title="AGAIN", host="127.0.0.1", port=again.port), LOCAL) > 0


def test_accepted_connections_have_nagle_disabled(scp):
    with raw_connection(scp.port) as sock:
        sock.sendall(associate_rq([build_context(Verification)]))
        assert recv_pdu(sock)[0] == 0x02
        (conn,) = scp._active.values()
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0



def test_the_association_announces_pacs_portal_not_pynetdicom(scp):
    with raw_connection(scp.port) as sock:
        sock.sendall(associate_rq([build_context(Verification)]))
        pdu_type, raw = recv_pdu(sock)
    ac = A_ASSOCIATE_AC()
    ac.decode(raw)
    announced = ac.to_primitive()
    assert pdu_type == 0x02
    assert announced.implementation_class_uid == IMPLEMENTATION_CLASS_UID != PYNETDICOM_IMPLEMENTATION_UID
    names = [item.implementation_version_name for item in announced.user_information
             if hasattr(item, "implementation_version_name")]
    assert names == [IMPLEMENTATION_VERSION_NAME]


def test_the_answer_goes_out_before_the_work_left_for_after_it_which_ends_before_the_next_instance(
        synthetic_files):
    """A live move's staging write runs after its answer (staging.AnsweredWrites), so the PACS sends on
    while we write; and before the association reads on, so a write never lags more than one instance."""
    events, gate = [], threading.Event()

    def on_instance(instance):
        events.append(("received", instance.sop_instance_uid))

        def write():
            events.append(("writing", instance.sop_instance_uid))
            gate.wait(10)
            events.append(("written", instance.sop_instance_uid))
        instance.after_answer = write
        return 0x0000

    ct = [p for p in synthetic_files if files.read_meta(p).sop_class_uid == CTImageStorage][:2]
    uids = [files.read_meta(p).sop_instance_uid for p in ct]
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), on_instance) as server:
        ae = AE(ae_title="SENDER")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="LEAN")
        try:
            assert assoc.send_c_store(ct[0]).Status == 0x0000  # answered, though its write is held up
            deadline = time.monotonic() + 5
            while len(events) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert events == [("received", uids[0]), ("writing", uids[0])]
            threading.Timer(0.3, gate.set).start()
            assert assoc.send_c_store(ct[1]).Status == 0x0000
        finally:
            assoc.release()
    assert events == [("received", uids[0]), ("writing", uids[0]), ("written", uids[0]),
                      ("received", uids[1]), ("writing", uids[1]), ("written", uids[1])]
