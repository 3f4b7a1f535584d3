"""C-ECHO and how every way of failing to reach a peer becomes a typed error in words."""
import socket
import time

import pytest

from apps.dicom import dimse
from apps.dicom.errors import AssociationRejected, ConnectionFailed, DicomTimeout
from apps.dicom.peers import LocalAE, RemoteAE
from tests.fixtures_common import unused_port

LOCAL = LocalAE(ae_title="ECHOTEST", port=0)


def test_echo_against_orthanc_reports_the_round_trip(orthanc):
    elapsed = dimse.echo(orthanc.peer(), LOCAL)
    assert 0 < elapsed < 5000


def test_a_wrong_called_ae_title_is_rejected_with_the_reason_in_words(orthanc):
    with pytest.raises(AssociationRejected) as caught:
        dimse.echo(orthanc.peer(ae_title="XYZ"), LOCAL)
    message = str(caught.value)
    assert "called AE title not recognised" in message and "'XYZ'" in message
    assert "ORTHANC" in message  # names the server
    assert not caught.value.retriable


def test_a_closed_port_is_a_retriable_connection_failure():
    peer = RemoteAE(ae_title="NOBODY", host="127.0.0.1", port=unused_port(), name="GONE", connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        dimse.echo(peer, LOCAL)
    assert time.monotonic() - started < 3
    assert caught.value.retriable
    assert "GONE" in str(caught.value) and "refused" in str(caught.value)


def test_a_peer_that_accepts_tcp_but_never_answers_times_out_in_time(silent_listener):
    port, accepted = silent_listener
    peer = RemoteAE(ae_title="SILENT", host="127.0.0.1", port=port, connect_timeout=2, query_timeout=2)
    started = time.monotonic()
    with pytest.raises(DicomTimeout) as caught:
        dimse.echo(peer, LOCAL)
    elapsed = time.monotonic() - started
    assert accepted, "the TCP connection was made"
    assert 1.5 < elapsed < 2 + 2
    assert caught.value.retriable and "did not answer" in str(caught.value)


def test_the_association_socket_has_nagle_disabled(orthanc):
    with dimse.associate(orthanc.peer(), LOCAL, purpose="query") as assoc:
        sock = assoc.raw.dul.socket.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert assoc.echo() > 0
