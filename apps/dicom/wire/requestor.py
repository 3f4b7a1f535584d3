"""The requesting side of an association on a raw socket, shared by the wire SCUs (C-FIND, C-GET, C-MOVE,
C-STORE): connect, propose contexts and read the answer into typed errors, send message parts, read the
next PDU against a deadline, and end with A-RELEASE (or A-ABORT when something went wrong)."""
from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time

from apps.dicom import errors
from apps.dicom.connect import open_socket
from apps.dicom.errors import AssociationAborted
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire import pdu
from apps.dicom.wire.messages import MessageAssembler

log = logging.getLogger(__name__)
MAX_PDU = 4 * 1024 * 1024  # the largest P-DATA-TF we accept from the peer
POLL_SECONDS = 0.2  # how often a wait with a stop event looks at it


class RequestorAssociation(MessageAssembler):
    """Subclasses implement on_message(command, context_id, dataset_parts, release) for what the peer sends.
    `buffered` reads what the peer sends after negotiation through pdu.BufferedReads; then batch_delay()
    is how long to wait after a PDU when nothing else has arrived, so that what the peer sends meanwhile
    is read in one go (see move_scu)."""

    buffered = False

    def __init__(self, peer: RemoteAE, local: LocalAE):
        self.peer, self.local = peer, local
        self.sock: socket.socket | None = None
        self.reads = None  # after negotiation, what every read goes through: the socket or its buffer
        self.max_pdu = peer.max_pdu or MAX_PDU  # what we accept
        self.peer_max_pdu = 0  # what the peer accepts; 0 = no limit
        self.contexts: dict[int, str] = {}  # accepted context id -> transfer syntax
        self.established = self.closed = False
        self.reset_message()

    def connect(self) -> None:
        self.sock = open_socket(self.peer)

    def negotiate(self, contexts: list[tuple[str, list[str]]], *, scp_role_for: list[str] = ()) -> None:
        """Propose `contexts` (ids 1, 3, 5, ... in order); on success `self.contexts` holds the accepted ones."""
        peer = self.peer
        self.sock.sendall(pdu.associate_rq(peer.ae_title, self.local.ae_title, contexts, self.max_pdu,
                                           scp_role_for=scp_role_for))
        try:
            pdu_type, body = pdu.read_pdu(self.sock, pdu.MAX_ASSOCIATE_RQ)
        except socket.timeout:
            raise errors.association_request_unanswered(peer) from None
        except (pdu.PeerClosed, OSError):
            raise AssociationAborted(f"{peer.label} closed the connection during the association request. Check "
                                     f"that the PACS knows our AE title '{self.local.ae_title}'.") from None
        if pdu_type == pdu.ASSOCIATE_RJ and len(body) >= 4:
            raise errors.association_rejected(peer, self.local, body[1], body[2], body[3])
        if pdu_type == pdu.ABORT:
            raise errors.association_request_aborted(peer, self.local)
        if pdu_type != pdu.ASSOCIATE_AC:
            raise pdu.ProtocolError(f"expected A-ASSOCIATE-AC, got PDU type {pdu_type}", pdu.UNEXPECTED_PDU)
        self.contexts, self.peer_max_pdu = pdu.parse_associate_ac(body)
        self.established = True
        self.reads = pdu.BufferedReads(self.sock) if self.buffered else self.sock

    def batch_delay(self) -> float:
        return 0.0

    @contextlib.contextmanager
    def aborted_on_failure(self, what: str):
        """Inside the block, a peer breaking the protocol or dropping the connection aborts the association
        and becomes AssociationAborted naming `what` (a request, say "C-FIND at STUDY level")."""
        try:
            yield
        except pdu.ProtocolError as exc:
            log.warning("aborting the association with %s during the %s: %s", self.peer.label, what, exc)
            self.close(release=False)
            raise AssociationAborted(f"{self.peer.label} broke the DICOM protocol during the {what} ({exc}).") from None
        except (pdu.PeerClosed, OSError) as exc:  # reset, broken pipe, a send that timed out
            self.close(release=False)
            raise AssociationAborted(f"{self.peer.label} dropped the association during the {what} ({exc}). "
                                     "Check the PACS log; try again.") from None

    def send(self, context_id: int, is_command: bool, data) -> None:
        self.sock.sendall(pdu.p_data(context_id, is_command, data, self.peer_max_pdu))

    def serve_until(self, done, deadline: float, what: str, *, stop: threading.Event | None = None) -> str:
        """Hand the peer's messages to on_message until done() is true ("final"), `deadline` (monotonic)
        passes ("deadline") or `stop` is set ("stopped"); both are looked at between PDUs only, never
        inside one. An A-ABORT becomes AssociationAborted, any other PDU a ProtocolError."""
        reads = self.reads
        while not done():
            if reads is not self.sock and not reads.pending():
                delay = self.batch_delay()
                if delay:
                    time.sleep(delay)
            if stop is not None and stop.is_set():
                return "stopped"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "deadline"
            if stop is not None and not self._readable(min(remaining, POLL_SECONDS)):
                continue
            self.sock.settimeout(remaining)
            try:
                pdu_type, length, pdu_deadline = pdu.read_pdu_header(reads, self.max_pdu + 6)
                if pdu_type == pdu.P_DATA_TF:
                    self.receive_p_data(reads, length, pdu_deadline)
                    continue
                pdu.read_exact(reads, length, pdu_deadline)
            except socket.timeout:
                return "deadline"
            if pdu_type == pdu.ABORT:
                raise AssociationAborted(f"{self.peer.label} aborted the association during the {what}. "
                                         "Check the PACS log; try again.")
            else:
                raise pdu.ProtocolError(f"unexpected PDU type {pdu_type} during the {what}", pdu.UNEXPECTED_PDU)
        return "final"

    def _readable(self, seconds: float) -> bool:
        if self.reads is not self.sock and self.reads.pending():
            return True  # bytes already read wait in our buffer
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True  # decrypted bytes already wait in the TLS layer, where select() cannot see them
        return bool(select.select([self.sock], [], [], seconds)[0])

    def close(self, *, release: bool) -> None:
        """End the association (A-RELEASE when the work finished, else A-ABORT) and the connection, once."""
        self.abandon_message()
        if self.sock is None or self.closed:
            return
        self.closed = True
        if self.established:
            self._release() if release else self._abort()
        self.sock.close()

    def _release(self) -> None:
        """A PACS that does not answer the A-RELEASE-RQ within the ACSE timeout is simply left."""
        try:
            self.sock.settimeout(self.peer.connect_timeout)
            self.sock.sendall(pdu.release_rq())
            while pdu.read_pdu(self.reads, self.max_pdu + 6)[0] not in (pdu.RELEASE_RP, pdu.ABORT):
                pass
        except (OSError, pdu.PeerClosed, pdu.ProtocolError):
            log.debug("no A-RELEASE-RP from %s", self.peer.label)

    def _abort(self) -> None:
        try:
            self.sock.sendall(pdu.abort(0, 0))  # source 0: the service user
        except OSError:
            pass
