"""Typed DICOM errors. Each carries a message a technologist understands and says whether a retry
may help (`retriable`): a refused connection or a timeout may pass; a rejected association or an
unknown AE title will not until someone changes the configuration."""
from __future__ import annotations


class DicomError(Exception):
    retriable = False

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status  # DIMSE status word, when one was received

    def __str__(self) -> str:
        return self.message


class ConnectionFailed(DicomError):
    """TCP connection refused, host unreachable, name not resolvable."""

    retriable = True


class AssociationRejected(DicomError):
    """The peer said no to the association (wrong called/calling AE title, no accepted contexts)."""


class AssociationAborted(DicomError):
    """The peer (or the network) dropped the association in the middle."""

    retriable = True


class DicomTimeout(DicomError):
    """No answer within the configured time (connect, association, or a DIMSE response)."""

    retriable = True


class RetrieveCanceled(DicomError):
    """The caller asked a running C-MOVE/C-GET to stop: it was cancelled (C-CANCEL, then abort)."""


class DimseFailure(DicomError):
    """The peer answered with a failure status (e.g. 0xA700 out of resources, 0xC000 cannot understand)."""


class InvalidDicomFile(DicomError):
    """A file that is not DICOM, is truncated, or lacks the attributes needed to send it."""


class DicomWebError(DicomError):
    """An HTTP-level failure talking to a DICOMweb service."""

    def __init__(self, message: str, *, http_status: int | None = None, retriable: bool = False):
        super().__init__(message)
        self.http_status = http_status
        self.retriable = retriable


# What went wrong while opening an association, in words that say what to check. Both ways of opening one
# (pynetdicom's in connect.py, for echo and queries; the socket-level one in wire/) raise these, so a
# failure reads the same whichever opened it.
REJECT_REASONS = {  # (source, diagnostic) of an A-ASSOCIATE-RJ, PS3.8 9.3.4
    (1, 1): "no reason given by the PACS; check the AE titles configured on both sides",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised: the PACS does not know our AE title '{local}'; ask its "
            "administrator to add {local} ({local_host}:{local_port}) as a DICOM node",
    (1, 7): "called AE title not recognised: the PACS does not know '{called}'; check the AE title "
            "configured for this server",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion; try again later",
    (3, 2): "local limit exceeded (too many associations); try again later",
}


def connection_refused(peer) -> ConnectionFailed:
    return ConnectionFailed(f"Cannot connect to {peer.label}: connection refused. Check that the PACS is "
                            "running and that host and port are right.")


def host_unknown(peer) -> ConnectionFailed:
    error = ConnectionFailed(f"Cannot connect to {peer.label}: the host name '{peer.host}' does not resolve to "
                             "an address. Check the server's host (a name such as pacs.local or an IP address).")
    error.retriable = False  # a name that does not resolve will not resolve on the next attempt either
    return error


def no_answer(peer) -> ConnectionFailed:
    return ConnectionFailed(f"No answer from {peer.label} within {peer.connect_timeout:g} s: the host is "
                            "unreachable or a firewall drops the connection. Check host and port.")


def tls_handshake_failed(peer, exc) -> ConnectionFailed:
    return ConnectionFailed(f"The TLS handshake with {peer.label} failed ({exc}). Check that this port speaks "
                            "DICOM over TLS and that the certificates on both sides match.")


def tls_certificate_refused(peer, verify_message: str) -> ConnectionFailed:
    error = ConnectionFailed(f"The TLS certificate of {peer.label} was not accepted ({verify_message}). Check "
                             "that the configured CA file signed the server's certificate and that the "
                             "certificate names this host.")
    error.retriable = False  # a configuration problem: retrying cannot help
    return error


def association_rejected(peer, local, result: int, source: int, diagnostic: int, fallback: str = "") -> AssociationRejected:
    reason = REJECT_REASONS.get((source, diagnostic), fallback or f"source {source}, reason {diagnostic}").format(
        local=local.ae_title, local_host=local.host, local_port=local.port, called=peer.ae_title)
    error = AssociationRejected(f"{peer.label} rejected the association: {reason}.")
    error.retriable = result == 0x02  # "rejected (transient)"
    return error


def association_request_aborted(peer, local) -> AssociationAborted:
    return AssociationAborted(f"{peer.label} aborted the association request. Check that the PACS knows our "
                              f"AE title '{local.ae_title}' and allows it to connect.")


def association_request_unanswered(peer) -> DicomTimeout:
    return DicomTimeout(f"{peer.label} accepted the TCP connection but did not answer the association request "
                        f"within {peer.connect_timeout:g} s. Check that this port is a DICOM service and that "
                        "the PACS is not overloaded.")
