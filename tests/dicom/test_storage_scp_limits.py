"""What a peer may cost a Storage SCP (in process): PDU buffers that grow as bytes arrive,
a deadline per PDU that ends a trickling peer, the idle timeout, and the association limit answered with
A-ASSOCIATE-RJ transient "local limit exceeded" (retriable) while the associations in progress go on."""
import socket
import struct
import threading
import time
import tracemalloc

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from apps.dicom import dimse
from apps.dicom.errors import AssociationRejected
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire import pdu
from apps.dicom.wire.received import ReceiverLimits
from apps.dicom.wire.storage_scp import LeanStorageSCP

LOCAL = LocalAE(ae_title="PROBE", port=0)


def test_a_peer_announcing_4_mb_and_sending_10_bytes_costs_kilobytes_not_megabytes():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(struct.pack(">BBL", pdu.P_DATA_TF, 0, 4 * 1024 * 1024) + b"x" * 10)
        theirs.shutdown(socket.SHUT_WR)
        tracemalloc.start()
        try:
            with pytest.raises(pdu.PeerClosed, match="after 10 of 4194304 bytes"):
                pdu.read_pdu(ours, 4 * 1024 * 1024 + 6)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 200_000, f"{peak} bytes for a 10-byte PDU body"


def test_a_pdu_growing_across_its_buffer_arrives_byte_for_byte():
    body = bytes(range(256)) * 4000 + b"tail"  # ~1 MB: the buffer grows 64 KB -> 256 KB -> 1 MB
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = threading.Thread(target=lambda: [theirs.sendall(piece) for piece in (
            (struct.pack(">BBL", pdu.P_DATA_TF, 0, len(body)) + body)[i:i + 70_001]
            for i in range(0, len(body) + 6, 70_001))])
        sender.start()
        ours.settimeout(30)
        pdu_type, received = pdu.read_pdu(ours, len(body))
        sender.join()
    assert pdu_type == pdu.P_DATA_TF and received == body


def test_a_peer_trickling_a_pdu_is_cut_at_the_pdu_deadline_though_never_silent_for_long():
    ours, theirs = socket.socketpair()
    stop = threading.Event()

    def trickle():
        theirs.sendall(struct.pack(">BBL", pdu.P_DATA_TF, 0, 1000))
        while not stop.wait(0.05):
            try:
                theirs.sendall(b"x")
            except OSError:
                return

    ours.settimeout(0.5)  # the PDU timeout: each byte comes well within it
    sender = threading.Thread(target=trickle)
    sender.start()
    started = time.monotonic()
    try:
        with pytest.raises(socket.timeout, match="of 1000 bytes arrived in the time allowed"):
            pdu.read_pdu(ours, 2000, idle_timeout=5.0)
    finally:
        stop.set()
        sender.join()
        ours.close()
        theirs.close()
    assert 0.4 < time.monotonic() - started < 2


def test_a_peer_may_be_silent_for_the_idle_timeout_between_pdus_but_not_longer():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(0.2)  # the PDU timeout
        threading.Timer(0.6, lambda: theirs.sendall(pdu.release_rp())).start()
        started = time.monotonic()
        assert pdu.read_pdu(ours, 100, idle_timeout=5.0)[0] == pdu.RELEASE_RP
        assert time.monotonic() - started >= 0.5
        assert ours.gettimeout() == 0.2, "the socket's timeout is left as it was"
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            pdu.read_pdu(ours, 100, idle_timeout=0.5)
        assert 0.4 < time.monotonic() - started < 1.5


def _associate(port: int, called: str):
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    return assoc


def test_one_association_over_the_limit_is_refused_as_transient_local_limit_exceeded():
    limits = ReceiverLimits(max_associations=2)
    with LeanStorageSCP(LocalAE(ae_title="CAPPED", port=0), lambda i: 0, limits=limits) as scp:
        peer = RemoteAE(ae_title="CAPPED", host="127.0.0.1", port=scp.port)
        held = [_associate(scp.port, "CAPPED") for _ in range(2)]
        with pytest.raises(AssociationRejected, match="local limit exceeded") as refused:
            dimse.echo(peer, LOCAL)
        assert refused.value.retriable
        assert held[0].send_c_echo().Status == 0x0000  # the running ones go on
        held[0].release()
        deadline = time.monotonic() + 5
        while True:  # the freed slot is taken by the next association
            try:
                assert dimse.echo(peer, LOCAL) > 0
                break
            except AssociationRejected:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        held[1].release()


def test_an_associated_peer_silent_past_the_idle_timeout_gets_an_abort():
    limits = ReceiverLimits(idle_timeout=0.5)
    with LeanStorageSCP(LocalAE(ae_title="IDLE", port=0), lambda i: 0, limits=limits) as scp:
        with socket.create_connection(("127.0.0.1", scp.port), timeout=10) as sock:
            sock.sendall(pdu.associate_rq("IDLE", "SILENT", [(Verification, ["1.2.840.10008.1.2"])], 16384))
            assert sock.recv(1) == bytes([pdu.ASSOCIATE_AC])
            sock.recv(65536)
            started = time.monotonic()
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            assert received[:1] == bytes([pdu.ABORT])
            assert 0.3 < time.monotonic() - started < 3


def test_a_connection_that_never_sends_its_association_request_is_closed_at_the_pdu_deadline():
    limits = ReceiverLimits(pdu_timeout=0.5)
    with LeanStorageSCP(LocalAE(ae_title="ARTIM", port=0), lambda i: 0, limits=limits) as scp:
        with socket.create_connection(("127.0.0.1", scp.port), timeout=10) as sock:
            started = time.monotonic()
            while sock.recv(65536):
                pass
            assert time.monotonic() - started < 3
        assert dimse.echo(RemoteAE(ae_title="ARTIM", host="127.0.0.1", port=scp.port), LOCAL) > 0
