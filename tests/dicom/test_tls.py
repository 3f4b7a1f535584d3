"""DICOM over TLS end to end on loopback: throw-away certificates made with the openssl CLI (the
`cryptography` package is not installed), an in-process pynetdicom Verification + Storage SCP that
requires a client certificate, and our SCU side (connect.open_association's TLS context)."""
import ssl
import subprocess
import threading
import time
from io import BytesIO

import pydicom
import pytest
from django.core.exceptions import ValidationError
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet, Verification

from apps.dicom import dimse, store
from apps.dicom.connect import set_nodelay
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import AssociationAborted, AssociationRejected, ConnectionFailed, DicomError
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire.get_scu import c_get
from apps.servers.models import DicomServer

LOCAL = LocalAE(ae_title="TLSTEST", port=0)
CA_EXTENSIONS = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
LEAF_EXTENSIONS = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(folder, name):
    (folder / f"{name}.cnf").write_text(f"[req]\ndistinguished_name=dn\nx509_extensions=v3\nprompt=no\n"
                                        f"[dn]\nCN={name}\n[v3]\n{CA_EXTENSIONS}")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=folder)
    openssl("req", "-x509", "-new", "-key", f"{name}.key", "-config", f"{name}.cnf", "-days", "2",
            "-sha256", "-out", f"{name}.pem", cwd=folder)
    return folder / f"{name}.pem"


def make_leaf(folder, name, ca, extra_extensions):
    (folder / f"{name}.ext").write_text(LEAF_EXTENSIONS + extra_extensions)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=folder)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr", cwd=folder)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, and an unrelated CA."""
    folder = tmp_path_factory.mktemp("tls")
    ca = make_ca(folder, "portal-ca")
    wrong_ca = make_ca(folder, "stranger-ca")
    server_cert, server_key = make_leaf(folder, "pacs", "portal-ca",
                                        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    client_cert, client_key = make_leaf(folder, "portal", "portal-ca", "extendedKeyUsage=clientAuth\n")
    return dict(ca=str(ca), wrong_ca=str(wrong_ca), server_cert=str(server_cert), server_key=str(server_key),
                client_cert=str(client_cert), client_key=str(client_key))


class VerifyStoreSCP:
    """Verification + Storage + C-GET SCP on a free loopback port; TLS (client certificate required) when
    `certs` is given. Records the SOP Instance UIDs it stores and the client certificates it saw; a C-GET
    sends back every dataset it stored."""

    def __init__(self, certs=None):
        self.stored, self.client_subjects, self.datasets = [], [], []
        self._lock = threading.Lock()
        ae = AE(ae_title="TLSPACS")
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        ae.add_supported_context(Verification)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        ssl_context = None
        if certs:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs["ca"])
            ssl_context.verify_mode = ssl.CERT_REQUIRED
            ssl_context.load_cert_chain(certs["server_cert"], certs["server_key"])
        self.server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=ssl_context,
                                      evt_handlers=[(evt.EVT_CONN_OPEN, self._on_open),
                                                    (evt.EVT_C_STORE, self._on_store),
                                                    (evt.EVT_C_GET, self._on_get)])
        self.port = self.server.server_address[1]

    def _on_open(self, event):
        set_nodelay(event)
        sock = event.assoc.dul.socket.socket
        if isinstance(sock, ssl.SSLSocket):
            with self._lock:
                self.client_subjects.append(dict(x[0] for x in sock.getpeercert()["subject"]))

    def _on_store(self, event):
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self._lock:
            self.stored.append(str(dataset.SOPInstanceUID))
            self.datasets.append(dataset)
        return 0x0000

    def _on_get(self, event):
        yield len(self.datasets)
        for dataset in self.datasets:
            yield 0xFF00, dataset

    def peer(self, **tls) -> RemoteAE:
        return RemoteAE(ae_title="TLSPACS", host="127.0.0.1", port=self.port, name="SECURE",
                        connect_timeout=3, query_timeout=5, **tls)


@pytest.fixture
def tls_scp(certs):
    scp = VerifyStoreSCP(certs)
    yield scp
    scp.server.shutdown()


@pytest.fixture
def plain_scp():
    scp = VerifyStoreSCP()
    yield scp
    scp.server.shutdown()


def client_tls(certs, ca="ca"):
    return dict(tls_ca=certs[ca], tls_cert=certs["client_cert"], tls_key=certs["client_key"])


def test_echo_over_tls_with_a_client_certificate(tls_scp, certs):
    elapsed = dimse.echo(tls_scp.peer(**client_tls(certs)), LOCAL)
    assert 0 < elapsed < 5000
    assert tls_scp.client_subjects == [{"commonName": "portal"}], "the SCP saw our client certificate"


def test_the_association_runs_over_an_encrypted_socket(tls_scp, certs):
    with dimse.associate(tls_scp.peer(**client_tls(certs)), LOCAL, purpose="echo") as assoc:
        sock = assoc.raw.dul.socket.socket
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        assert dict(x[0] for x in sock.getpeercert()["subject"]) == {"commonName": "pacs"}
        assert assoc.echo() > 0


def test_store_files_over_tls_land_in_the_scp(tls_scp, certs, tmp_path):
    write_dataset(tmp_path, patients=1, studies=1, instances=3, rows=64, cols=64, seed=5, id_prefix="TLS")
    paths = sorted(tmp_path.rglob("*.dcm"))
    report = store.store_files(tls_scp.peer(**client_tls(certs)), LOCAL, paths)
    sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
    assert len(paths) == 3 and report.failed == [] and report.landed == 3
    assert set(tls_scp.stored) == sent


def test_the_socket_level_c_get_runs_over_tls_with_a_client_certificate(tls_scp, certs, tmp_path):
    write_dataset(tmp_path, patients=1, studies=1, instances=3, rows=64, cols=64, seed=6, id_prefix="TLSGET")
    paths = sorted(tmp_path.rglob("*.dcm"))
    peer = tls_scp.peer(**client_tls(certs))
    assert store.store_files(peer, LOCAL, paths).landed == 3
    study_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    received = {}

    def keep(instance):
        received[instance.sop_instance_uid] = pydicom.dcmread(BytesIO(instance.data))
        return 0x0000

    result = c_get(peer, LOCAL, {"StudyInstanceUID": study_uid}, keep)
    assert (result.completed, result.failed) == (3, 0)
    assert set(received) == set(tls_scp.stored)
    assert tls_scp.client_subjects == [{"commonName": "portal"}] * 2, "the C-GET association showed our certificate"


def test_the_socket_level_c_get_names_an_untrusted_certificate(tls_scp, certs):
    with pytest.raises(ConnectionFailed) as caught:
        c_get(tls_scp.peer(**client_tls(certs, ca="wrong_ca")), LOCAL, {"StudyInstanceUID": "1.2.3"}, lambda i: 0)
    assert "certificate of SECURE" in str(caught.value) and "not accepted" in str(caught.value)
    assert not caught.value.retriable
    assert tls_scp.client_subjects == []


def test_a_peer_certificate_from_another_ca_is_a_clear_tls_error(tls_scp, certs):
    with pytest.raises(DicomError) as caught:
        dimse.echo(tls_scp.peer(**client_tls(certs, ca="wrong_ca")), LOCAL)
    assert isinstance(caught.value, (ConnectionFailed, AssociationRejected, AssociationAborted))
    message = str(caught.value)
    assert "TLS" in message and "certificate" in message and "SECURE" in message
    assert "certificate of SECURE" in message and "not accepted" in message, "says why, not 'refused or unreachable'"
    assert "self-signed certificate in certificate chain" in message  # OpenSSL's verdict, passed on
    assert not caught.value.retriable, "a trust problem does not go away by retrying"
    assert tls_scp.stored == [] and tls_scp.client_subjects == []


def test_tls_against_a_plain_dicom_peer_fails_clearly_within_the_timeout(plain_scp, certs):
    peer = plain_scp.peer(**client_tls(certs))
    started = time.monotonic()
    with pytest.raises(DicomError) as caught:
        dimse.echo(peer, LOCAL)
    assert time.monotonic() - started < peer.connect_timeout + 1
    assert isinstance(caught.value, (ConnectionFailed, AssociationRejected, AssociationAborted))
    assert "TLS handshake with SECURE" in str(caught.value) and "speaks DICOM over TLS" in str(caught.value)
    assert dimse.echo(plain_scp.peer(), LOCAL) > 0, "the same peer answers plain DICOM"


def test_missing_tls_files_are_named_before_any_connection(tls_scp, certs, tmp_path):
    peer = tls_scp.peer(tls_ca=str(tmp_path / "nowhere.pem"))
    with pytest.raises(DicomError) as caught:
        dimse.echo(peer, LOCAL)
    assert "TLS files" in str(caught.value) and "SECURE" in str(caught.value)


def server_record(port, certs, **overrides):
    fields = dict(name="SECURE", ae_title="TLSPACS", host="127.0.0.1", port=port, tls_enabled=True,
                  tls_ca_file=certs["ca"], tls_cert_file=certs["client_cert"], tls_key_file=certs["client_key"])
    return DicomServer(**{**fields, **overrides})


@pytest.mark.django_db
def test_a_tls_server_record_echoes_through_its_peer(tls_scp, certs):
    server = server_record(tls_scp.port, certs)
    server.full_clean()
    server.save()
    peer = server.as_peer()
    assert (peer.tls_ca, peer.tls_cert, peer.tls_key) == (certs["ca"], certs["client_cert"], certs["client_key"])
    result = server.echo()
    assert result["ok"] is True and result["error"] is None and result["elapsed_ms"] > 0
    assert tls_scp.client_subjects == [{"commonName": "portal"}]


@pytest.mark.django_db
def test_a_server_record_with_tls_off_connects_in_plain_dicom(tls_scp, certs):
    server = server_record(tls_scp.port, certs, tls_enabled=False)
    assert server.as_peer().tls_ca is None
    result = server.echo()
    assert result["ok"] is False and "aborted" in result["error"] and tls_scp.client_subjects == []


def test_tls_on_without_a_ca_file_does_not_validate(certs):
    with pytest.raises(ValidationError) as caught:
        server_record(104, certs, tls_ca_file="").clean()
    assert "tls_ca_file" in caught.value.message_dict
    server_record(104, certs, tls_enabled=False, tls_ca_file="").clean()  # no TLS, no CA needed
