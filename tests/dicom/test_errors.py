"""How a peer's bad behaviour becomes a typed error, against in-process pynetdicom peers: failure
statuses, aborts, silence after association, unknown calling AE titles, and TLS."""
import ssl
import subprocess
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from apps.dicom import dimse
from apps.dicom.errors import AssociationAborted, AssociationRejected, ConnectionFailed, DicomTimeout, DimseFailure
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.scu import c_move

LOCAL = LocalAE(ae_title="PORTAL", port=0)


@pytest.fixture
def find_scp():
    """A C-FIND SCP whose behaviour each test sets in `behaviour`."""
    behaviour = {}

    def on_find(event):
        action = behaviour["action"]
        if action == "abort":
            event.assoc.abort()
            yield 0xFF00, None  # never sent
        elif action == "sleep":
            time.sleep(3)
            yield 0x0000, None
        else:
            match = Dataset()
            match.PatientID = "P1"
            yield 0xFF00, match
            yield action, None

    ae = AE(ae_title="QRSCP")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    yield RemoteAE(ae_title="QRSCP", host="127.0.0.1", port=server.server_address[1], name="TESTPACS",
                   query_timeout=1), behaviour
    server.shutdown()


def test_a_failure_status_names_the_word_and_its_meaning(find_scp):
    peer, behaviour = find_scp
    behaviour["action"] = 0xA700
    with pytest.raises(DimseFailure) as caught:
        dimse.find(peer, LOCAL, "STUDY", {"PatientID": ""})
    assert caught.value.status == 0xA700 and not caught.value.retriable
    message = str(caught.value)
    assert "TESTPACS" in message and "0xA700" in message and "Out of Resources" in message


def test_a_peer_aborting_mid_query_is_association_aborted(find_scp):
    peer, behaviour = find_scp
    behaviour["action"] = "abort"
    with pytest.raises(AssociationAborted) as caught:
        dimse.find(peer, LOCAL, "STUDY", {"PatientID": ""})
    assert caught.value.retriable and "TESTPACS" in str(caught.value)


def test_no_answer_within_the_query_timeout_is_a_timeout(find_scp):
    peer, behaviour = find_scp
    behaviour["action"] = "sleep"
    started = time.monotonic()
    with pytest.raises(DicomTimeout, match="within 1 s"):
        dimse.find(peer, LOCAL, "STUDY", {"PatientID": ""})
    assert time.monotonic() - started < 1 + 1.5


def test_successful_find_still_returns_matches(find_scp):
    peer, behaviour = find_scp
    behaviour["action"] = 0x0000
    assert [m.PatientID for m in dimse.find(peer, LOCAL, "STUDY", {"PatientID": ""})] == ["P1"]


def test_a_service_the_peer_does_not_offer_is_named(find_scp):
    peer, _ = find_scp
    with pytest.raises(DimseFailure, match="does not offer C-MOVE"):
        c_move(peer, LOCAL, {"StudyInstanceUID": "1.2.3"}, "PORTAL")


def test_an_unknown_calling_ae_title_is_rejected_with_advice():
    ae = AE(ae_title="STRICT")
    ae.add_supported_context(Verification)
    ae.require_calling_aet = ["KNOWNAE"]
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        peer = RemoteAE(ae_title="STRICT", host="127.0.0.1", port=server.server_address[1])
        with pytest.raises(AssociationRejected) as caught:
            dimse.echo(peer, LocalAE(ae_title="STRANGER", port=11112))
        assert "does not know our AE title 'STRANGER'" in str(caught.value)
        assert dimse.echo(peer, LocalAE(ae_title="KNOWNAE")) > 0
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    d = tmp_path_factory.mktemp("tls")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca", "-keyout", "ca.key",
        "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "server.pem")
    return d


def test_tls_echo_verifies_the_server_against_the_ca(tls_files, tmp_path):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files / "server.pem", tls_files / "server.key")
    ae = AE(ae_title="TLSPACS")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=context)
    try:
        port = server.server_address[1]
        peer = RemoteAE(ae_title="TLSPACS", host="127.0.0.1", port=port, tls_ca=str(tls_files / "ca.pem"))
        assert dimse.echo(peer, LOCAL) > 0
        (tmp_path / "other-ca.pem").write_text((tls_files / "server.pem").read_text())
        stranger = RemoteAE(ae_title="TLSPACS", host="127.0.0.1", port=port, tls_ca=str(tmp_path / "other-ca.pem"),
                            connect_timeout=3)
        with pytest.raises(ConnectionFailed, match="TLS"):
            dimse.echo(stranger, LOCAL)
    finally:
        server.shutdown()
