"""Opening one association: TCP (optionally TLS) with TCP_NODELAY, timeouts from the peer, the largest
PDU, and when it fails, a typed error that says how far it got (refused, rejected and why, silence)."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

from pynetdicom import AE, build_context, evt
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from apps.dicom import errors, reuse
from apps.dicom.errors import AssociationRejected, ConnectionFailed, DicomError
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.syntaxes import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
)

log = logging.getLogger(__name__)

MODELS = {  # query model -> (FIND, MOVE, GET) SOP classes
    "study": (StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove,
              StudyRootQueryRetrieveInformationModelGet),
    "patient": (PatientRootQueryRetrieveInformationModelFind, PatientRootQueryRetrieveInformationModelMove,
                PatientRootQueryRetrieveInformationModelGet),
}
CANCEL_GRACE_SECONDS = 2.0  # after a C-CANCEL, how long the PACS may take to stop before we abort


def text_value(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip().rstrip("\x00")


def set_nodelay(event) -> None:
    """Nagle's algorithm costs ~40 ms per DIMSE message on loopback (pacs-lab README). Used as an
    EVT_CONN_OPEN handler on both sides."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HandshakeRecordingSocket(ssl.SSLSocket):
    """Keeps why a TLS handshake failed on its context: pynetdicom only logs it, and the person
    configuring the server needs it in the error (certificate not trusted vs. not a TLS port)."""

    def do_handshake(self, *args, **kwargs):
        try:
            return super().do_handshake(*args, **kwargs)
        except OSError as exc:  # ssl.SSLError included
            self.context.handshake_error = exc
            raise


def tls_context(peer: RemoteAE):
    """(SSLContext, server name) for a peer with TLS configured, else None."""
    if not peer.tls_ca:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=peer.tls_ca)
        context.sslsocket_class = _HandshakeRecordingSocket
        context.handshake_error = None
        if peer.tls_cert:
            context.load_cert_chain(peer.tls_cert, peer.tls_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise DicomError(f"The TLS files configured for {peer.label} cannot be loaded ({exc}). "
                         "Check the CA, certificate and key paths.") from None
    return context, peer.host


class _OpenProbe:
    """Remembers how far an association request got, to say precisely why it failed."""

    def __init__(self):
        self.connected = False
        self.response = None
        self.aborted = False
        self.tls_error: OSError | None = None  # why the TLS handshake failed, when it did

    def on_open(self, event):
        set_nodelay(event)
        self.connected = True

    def on_acse(self, event):
        primitive = event.primitive
        if isinstance(primitive, A_ASSOCIATE) and primitive.result is not None:
            self.response = primitive
        elif isinstance(primitive, (A_ABORT, A_P_ABORT)):
            self.aborted = True


def _open_error(peer: RemoteAE, local: LocalAE, probe: _OpenProbe, elapsed: float) -> DicomError:
    if not probe.connected:
        if isinstance(probe.tls_error, ssl.SSLCertVerificationError):
            return errors.tls_certificate_refused(peer, probe.tls_error.verify_message)
        if probe.tls_error is not None:
            return errors.tls_handshake_failed(peer, probe.tls_error)
        if peer.tls_ca:
            return ConnectionFailed(f"Cannot open a TLS connection to {peer.label}: refused, unreachable or the "
                                    "TLS handshake failed. Check host, port, and the certificates.")
        return errors.no_answer(peer) if elapsed >= peer.connect_timeout * 0.9 else errors.connection_refused(peer)
    rsp = probe.response
    if rsp is not None and rsp.result in (0x01, 0x02):
        return errors.association_rejected(peer, local, rsp.result, rsp.result_source, rsp.diagnostic,
                                           f"reason {rsp.reason_str}")
    if rsp is not None:
        return AssociationRejected(f"{peer.label} accepted the association but none of the services we "
                                   "proposed; check that this server offers them to our AE title.")
    if probe.aborted:
        return errors.association_request_aborted(peer, local)
    return errors.association_request_unanswered(peer)


def open_socket(peer: RemoteAE) -> socket.socket:
    """A TCP (or TLS) connection to `peer` for the socket-level SCUs (wire/): TCP_NODELAY, the connect timeout,
    and the same typed errors as an association opened by pynetdicom."""
    started = time.monotonic()
    reuse.before_connect(peer)
    try:
        sock = socket.create_connection((peer.host, peer.port), timeout=peer.connect_timeout)
    except socket.gaierror:
        raise errors.host_unknown(peer) from None
    except OSError as exc:
        if isinstance(exc, socket.timeout) or time.monotonic() - started >= peer.connect_timeout * 0.9:
            raise errors.no_answer(peer) from None
        raise errors.connection_refused(peer) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = tls_context(peer)
    if tls is None:
        return sock
    context, server_name = tls
    try:
        return context.wrap_socket(sock, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise errors.tls_certificate_refused(peer, exc.verify_message) from None
    except OSError as exc:
        sock.close()
        raise errors.tls_handshake_failed(peer, exc) from None


def application_entity(ae_title: str) -> AE:
    """A pynetdicom AE that announces PACS Portal's implementation class UID and version name."""
    ae = AE(ae_title=ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    return ae


def open_association(peer: RemoteAE, local: LocalAE, contexts, *, ext_neg=None, handlers=()):
    """An established pynetdicom Association, or a DicomError saying why not."""
    ae = application_entity(local.ae_title)
    ae.connection_timeout = peer.connect_timeout
    ae.acse_timeout = peer.connect_timeout  # association request and release
    ae.dimse_timeout = peer.query_timeout  # per response
    # The association may sit idle while the caller works between requests; the DIMSE timeout bounds
    # the waits that matter.
    ae.network_timeout = max(peer.query_timeout, peer.retrieve_timeout) + peer.connect_timeout
    ae.maximum_pdu_size = peer.max_pdu
    ae.requested_contexts = contexts
    probe = _OpenProbe()
    tls_args = tls_context(peer)
    started = time.monotonic()
    reuse.before_connect(peer)
    try:
        socket.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM)  # pynetdicom raises it unwrapped
    except (socket.gaierror, UnicodeError, ValueError):
        raise errors.host_unknown(peer) from None
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, max_pdu=peer.max_pdu, ext_neg=ext_neg,
                         tls_args=tls_args,
                         evt_handlers=[(evt.EVT_CONN_OPEN, probe.on_open), (evt.EVT_ACSE_RECV, probe.on_acse),
                                       *handlers])
    if assoc.is_established:
        return assoc
    if tls_args:
        probe.tls_error = tls_args[0].handshake_error
    raise _open_error(peer, local, probe, time.monotonic() - started)


RELEASE_POLL_SECONDS = 0.0002


def release_association(assoc) -> None:
    """Release a pynetdicom association, returning once the peer has confirmed it (A-RELEASE-RP) or the
    association was aborted. pynetdicom's release then stops its reactor thread, polling every 10 ms:
    up to 10 ms more for a caller that opens the next association only once this one is over (a server
    allowing one association). That teardown ends on its own thread."""
    def release() -> None:
        try:
            assoc.release()
        except Exception as exc:  # the peer may have gone; the association is finished either way
            log.debug("releasing an association failed: %s", exc)
            assoc.abort()

    teardown = threading.Thread(target=release, name="dicom-release", daemon=True)
    teardown.start()
    while teardown.is_alive() and not (assoc.is_released or assoc.is_aborted):
        time.sleep(RELEASE_POLL_SECONDS)


def query_contexts() -> list[PresentationContext]:
    """Verification and the Study/Patient Root FIND models: what dimse.associate's "query" purpose proposes."""
    return [build_context(Verification)] + [build_context(model[0]) for model in MODELS.values()]
