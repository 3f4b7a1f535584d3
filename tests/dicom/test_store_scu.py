"""The C-STORE SCU (wire/store_scu.py) against a real Orthanc and DCMTK storescp (the same dataset bytes
as the sources), and against broken peers speaking raw PDUs: every failure is a typed error with words,
never a hang."""
import os
import socket
import subprocess
import threading
import time

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from apps.dicom import files, store
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import AssociationAborted, AssociationRejected, ConnectionFailed, DicomTimeout
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire import commands, pdu
from tests.fixtures_common import unused_port
from tests.pacs import dataset_part, port_open

LOCAL = LocalAE(ae_title="LEANSTORE", port=0)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store-scu")
    write_dataset(folder, patients=2, studies=1, series=1, instances=3, rows=128, cols=128, seed=21, id_prefix="SCU")
    (folder / "manifest.json").unlink()
    return sorted(folder.rglob("*.dcm"))


def by_uid(paths):
    return {files.read_meta(p).sop_instance_uid: dataset_part(p.read_bytes()) for p in paths}


def test_the_files_land_in_orthanc_byte_for_byte(empty_orthanc, sources):
    report = store.store_files(empty_orthanc.peer(), LOCAL, sources)
    assert report.failed == [] and len(report.stored) == len(sources) and report.stored[0].status == 0
    expected = by_uid(sources)
    for instance in empty_orthanc.rest("GET", "/instances").json():
        stored = empty_orthanc.rest("GET", f"/instances/{instance}/file").content
        assert dataset_part(stored) == expected[files.read_meta(stored).sop_instance_uid]
    assert empty_orthanc.instances() == set(expected)


def test_dcmtk_storescp_receives_the_files_byte_for_byte(sources, tmp_path):
    out = tmp_path / "storescp"
    out.mkdir()
    port = unused_port()
    scp = subprocess.Popen(["storescp", "-aet", "REF", "-od", str(out), str(port)],
                           env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_open(port):
            time.sleep(0.05)
        report = store.store_files(RemoteAE(ae_title="REF", host="127.0.0.1", port=port), LOCAL, sources)
    finally:
        scp.terminate()
        scp.wait(10)
    assert report.landed == len(sources)
    assert by_uid(sorted(out.iterdir())) == by_uid(sources)


def test_a_wrong_called_ae_title_is_rejected_and_a_closed_port_refused(empty_orthanc, sources):
    with pytest.raises(AssociationRejected, match="called AE title"):
        store.store_files(empty_orthanc.peer(ae_title="NOT_ORTHANC"), LOCAL, sources[:1])
    with pytest.raises(ConnectionFailed, match="connection refused") as caught:
        store.store_files(RemoteAE(ae_title="X", host="127.0.0.1", port=unused_port()), LOCAL, sources[:1])
    assert caught.value.report.landed == 0


class RawPeer:
    """A storage 'PACS' on a raw socket that accepts every proposed context, then misbehaves as told:
    "ok" answers success, "abort" sends A-ABORT, "silent" never answers, "wrong-id" answers another
    message, "garbage" sends bytes that are no PDU, "close" hangs up, "no-ac" never answers the request."""

    def __init__(self, mode: str, max_pdu: int = 0):
        self.mode, self.max_pdu = mode, max_pdu
        self.received_pdu_sizes: list[int] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.server.accept()
        try:
            self.converse(conn)
        except OSError:  # the client under test gave up on this misbehaving peer: that is the point
            pass
        finally:
            conn.close()

    def converse(self, conn):
        _, body = pdu.read_pdu(conn, pdu.MAX_ASSOCIATE_RQ)
        if self.mode == "no-ac":
            time.sleep(3)
            return
        rq = pdu.parse_associate_rq(body)
        conn.sendall(pdu.associate_ac(rq, [(c.context_id, 0, c.transfer_syntaxes[0]) for c in rq.contexts],
                                      self.max_pdu))
        command = b""
        while True:
            try:
                pdu_type, body = pdu.read_pdu(conn, 1 << 24)
            except (pdu.PeerClosed, OSError):
                return
            if pdu_type != pdu.P_DATA_TF:
                conn.sendall(pdu.release_rp())
                return
            self.received_pdu_sizes.append(len(body))  # the variable field, which Maximum Length bounds
            for context_id, is_command, is_last, data in pdu.pdvs(body):
                if is_command:
                    command = bytes(data)
                elif is_last:
                    self.answer(conn, context_id, commands.decode(command))

    def answer(self, conn, context_id, cmd):
        message_id = commands.us(cmd, commands.MESSAGE_ID)
        rsp = lambda msg_id, status: pdu.p_data(context_id, True, commands.response(  # noqa: E731
            commands.C_STORE_RSP, msg_id, commands.text(cmd[commands.AFFECTED_SOP_CLASS]), status), 0)
        if self.mode == "ok":
            conn.sendall(rsp(message_id, 0xB007))
        elif self.mode == "abort":
            conn.sendall(pdu.abort(2, 0))
        elif self.mode == "silent":
            time.sleep(3)
        elif self.mode == "wrong-id":
            conn.sendall(rsp(message_id + 7, 0x0000))
        elif self.mode == "garbage":
            conn.sendall(b"\x99" * 20)
        elif self.mode == "close":
            conn.close()

    def peer(self, **overrides):
        return RemoteAE(**{"ae_title": "RAW", "host": "127.0.0.1", "port": self.port, "connect_timeout": 1.0,
                           "retrieve_timeout": 1.0, **overrides})

    def close(self):
        self.server.close()


@pytest.mark.parametrize("mode, error, words", [
    ("abort", AssociationAborted, "aborted the association during the C-STORE"),
    ("silent", DicomTimeout, "did not answer the C-STORE within 1 s"),
    ("wrong-id", AssociationAborted, "broke the DICOM protocol"),
    ("garbage", AssociationAborted, "broke the DICOM protocol"),
    ("close", AssociationAborted, "dropped the association"),
    ("no-ac", DicomTimeout, "did not answer the association request"),
])
def test_a_broken_peer_is_a_typed_error_never_a_hang(sources, mode, error, words):
    peer = RawPeer(mode)
    started = time.monotonic()
    try:
        with pytest.raises(error, match=words):
            store.store_files(peer.peer(), LOCAL, sources[:2])
    finally:
        peer.close()
    assert time.monotonic() - started < 5


def test_a_warning_status_and_the_peers_maximum_pdu_size(sources):
    peer = RawPeer("ok", max_pdu=4096)
    try:
        report = store.store_files(peer.peer(), LOCAL, sources[:2])
    finally:
        peer.close()
    assert [o.status for o in report.warnings] == [0xB007, 0xB007] and report.stored == []
    assert max(peer.received_pdu_sizes) <= 4096 and len(peer.received_pdu_sizes) > 2 * (128 * 128 * 2 // 4096)


def test_a_file_changed_after_it_was_listed_fails_alone(sources, tmp_path, empty_orthanc):
    import shutil

    copies = [shutil.copy(p, tmp_path / p.name) for p in sources[:2]]
    info = files.read_meta(copies[0])
    with open(copies[0], "ab") as f:
        f.write(b"\0" * 10)  # grew after read_meta
    from apps.dicom.wire.store_scu import store_association

    with store_association(empty_orthanc.peer(), LOCAL, [(info.sop_class_uid, ExplicitVRLittleEndian)]) as assoc:
        with pytest.raises(Exception, match="changed while it was being sent"):
            assoc.store_file(copies[0], info)
        assert assoc.store_file(copies[1], files.read_meta(copies[1])).ok

