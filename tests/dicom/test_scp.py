"""The Storage SCP: bytes as received, a failing callback costs one instance a failure status and
never the server, malformed data is refused, wrong called AE titles are rejected."""
import socket
import threading

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage

from apps.dicom import dimse, files
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import AssociationRejected
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.scp import StorageSCP
from apps.dicom.scu import store_association
from tests.pacs import dataset_part

LOCAL = LocalAE(ae_title="SENDER", port=0)


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    write_dataset(folder, patients=1, studies=1, instances=4, modalities=("CT",), seed=21, id_prefix="SCP")
    return sorted(folder.rglob("*.dcm"))


class Receiver:
    """A callback whose behaviour the test switches: keep, or raise a given exception."""

    def __init__(self):
        self.kept, self.error, self.lock = [], None, threading.Lock()

    def __call__(self, instance):
        if self.error is not None:
            raise self.error
        with self.lock:
            self.kept.append(instance)
        return 0x0000


@pytest.fixture
def scp():
    receiver = Receiver()
    with StorageSCP(LocalAE(ae_title="RECEIVER", port=0), receiver) as server:
        server.receiver = receiver
        server.peer = RemoteAE(ae_title="RECEIVER", host="127.0.0.1", port=server.port)
        yield server


def store_all(peer, paths):
    with store_association(peer, LOCAL, [(CTImageStorage, ExplicitVRLittleEndian)]) as assoc:
        return [assoc.store_file(p, files.read_meta(p)) for p in paths]


def test_port_zero_gives_a_real_port_and_echo_works(scp):
    assert scp.port > 0
    assert dimse.echo(scp.peer, LOCAL) > 0


def test_instances_arrive_as_the_exact_file_bytes(scp, ct_files):
    outcomes = store_all(scp.peer, ct_files)
    assert all(o.ok for o in outcomes)
    by_uid = {i.sop_instance_uid: i for i in scp.receiver.kept}
    for path in ct_files:
        instance = by_uid[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID]
        # the dataset is byte-identical: no decode, no re-encode on either side
        assert dataset_part(instance.data) == dataset_part(path.read_bytes())
        assert pydicom.dcmread(DicomBytesIO(instance.data)).SOPInstanceUID == instance.sop_instance_uid
        assert instance.calling_ae == "SENDER" and instance.move_originator_ae is None
        assert instance.move_originator_message_id is None
        assert instance.sop_class_uid == CTImageStorage and instance.transfer_syntax_uid == ExplicitVRLittleEndian


@pytest.mark.parametrize("error, status", [(OSError(28, "No space left on device"), 0xA700),
                                           (RuntimeError("bug"), 0xC000)])
def test_a_failing_callback_answers_a_failure_status_and_the_server_keeps_serving(scp, ct_files, error, status):
    scp.receiver.error = error
    failed = store_all(scp.peer, ct_files[:1])[0]
    assert not failed.ok and failed.status == status
    scp.receiver.error = None
    assert all(o.ok for o in store_all(scp.peer, ct_files[1:]))  # a new association, same server
    assert len(scp.receiver.kept) == len(ct_files) - 1


def test_malformed_data_is_refused_before_the_callback(scp, ct_files, tmp_path, monkeypatch):
    """A dataset whose last element claims more bytes than were sent (sent raw, as a broken peer would)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # pynetdicom sends the file's bytes unchecked
    path = tmp_path / "broken.dcm"
    path.write_bytes(ct_files[0].read_bytes()[:-4])  # the pixel data now ends 4 bytes early
    ae = AE(ae_title="BROKEN")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="RECEIVER")
    try:
        rsp = assoc.send_c_store(path)  # pynetdicom streams the file's bytes unchecked
        good = assoc.send_c_store(ct_files[1])
    finally:
        assoc.release()
    assert rsp.Status == 0xC000 and "Malformed" in rsp.ErrorComment
    assert good.Status == 0x0000
    assert [i.sop_instance_uid for i in scp.receiver.kept] == [pydicom.dcmread(ct_files[1]).SOPInstanceUID]


def test_a_sender_calling_another_ae_title_is_rejected(scp):
    with pytest.raises(AssociationRejected, match="called AE title not recognised"):
        dimse.echo(RemoteAE(ae_title="SOMEONEELSE", host="127.0.0.1", port=scp.port), LOCAL)


def test_accepted_connections_have_nagle_disabled(scp):
    with dimse.associate(scp.peer, LOCAL, purpose="echo") as assoc:
        assoc.echo()
        server_side = scp._server.active_associations[0].dul.socket.socket
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_stop_frees_the_port():
    server = StorageSCP(LocalAE(ae_title="SHORT", port=0), lambda i: 0).start()
    port = server.port
    server.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
