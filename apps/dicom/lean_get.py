"""A lean C-GET SCU written directly on sockets: the C-GET fast path.

With C-GET the PACS sends its C-STOREs back on our own association and waits for each C-STORE
response, so the Python we spend per instance is the retrieval's throughput. pynetdicom spends ~3 ms
(PDU objects, its reactor's 1 ms sleep, a pydicom Dataset per message); this SCU reads PDUs into
buffers, keeps dataset fragments as views of them, and answers with a hand-encoded C-STORE-RSP, like
the lean Storage SCP (apps/dicom/lean_scp.py, whose PS3.7 command helpers it shares; PS3.8 upper
layer in apps/dicom/ul.py). Only the requestor's side of the upper layer is added here.

The result, the statuses and the errors are those of apps.dicom.dimse.Association.get.
"""
from __future__ import annotations

import logging
from io import BytesIO
import socket
import struct
import time
from typing import Callable

from pydicom.uid import (UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1,
                         JPEGLossless, JPEGLSLossless, JPEGLSNearLossless, RLELossless)
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, StoragePresentationContexts
from pynetdicom.dsutils import decode, encode

from apps.dicom import files, lean_scp, ul
from apps.dicom.connect import CANCEL_GRACE_SECONDS, MAX_CONTEXTS, MODELS, REJECT_REASONS, _tls_args, text_value
from apps.dicom.dimse import MoveResult, _identifier, _what
from apps.dicom.errors import (AssociationAborted, AssociationRejected, ConnectionFailed, DicomTimeout,
                               DimseFailure)
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.scp import ReceivedInstance, deliver
from apps.dicom.status import category, describe

log = logging.getLogger(__name__)

# Uncompressed first so the PACS sends uncompressed objects as they are; compressed ones still arrive as stored.
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit,
                     JPEGLosslessSV1, JPEGLossless, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000,
                     RLELossless, DeflatedExplicitVRLittleEndian]
STORAGE_SOP_CLASSES = [str(cx.abstract_syntax) for cx in StoragePresentationContexts][:MAX_CONTEXTS - 1]
C_STORE_RQ, C_GET_RQ, C_GET_RSP, C_CANCEL_RQ = 0x0001, 0x0010, 0x8010, 0x0FFF
HAS_DATASET, NO_DATASET = 0x0000, 0x0101
STATUS, REMAINING, COMPLETED, FAILED, WARNING = 0x0900, 0x1020, 0x1021, 0x1022, 0x1023
COUNTS = (("remaining", REMAINING), ("completed", COMPLETED), ("failed", FAILED), ("warning", WARNING))


def parse_response_command(data: bytes) -> dict[int, bytes]:
    """Element (0000,eeee) -> value of an Implicit VR LE command set. Unlike a C-STORE-RQ's (lean_scp),
    this tolerates elements of other groups: Orthanc's C-GET-RSP after a failed sub-operation carries
    (0008,0058) Failed SOP Instance UID List inside the command set. They are skipped."""
    elements, pos = {}, 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise ul.ProtocolError("a command set ends inside an element header")
        group, element, length = struct.unpack_from("<HHL", data, pos)
        if pos + 8 + length > len(data):
            raise ul.ProtocolError(f"command set element ({group:04X},{element:04X}) runs past its end")
        if group == 0:
            elements[element] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return elements


def _ae(title: str) -> bytes:
    return title.encode("ascii")[:16].ljust(16, b" ")


def associate_rq(called: str, calling: str, get_sop_class: str, max_pdu: int) -> bytes:
    """A-ASSOCIATE-RQ: context 1 = the GET model, then one context per storage SOP class, each with an
    SCP/SCU Role Selection sub-item taking the SCP role (PS3.7 D.3.3.4): the C-STOREs come back to us."""
    items = [ul._item(0x10, ul._uid(ul.APPLICATION_CONTEXT))]
    syntaxes = b"".join(ul._item(0x40, ul._uid(ts)) for ts in TRANSFER_SYNTAXES)
    for n, uid in enumerate([get_sop_class, *STORAGE_SOP_CLASSES]):
        uncompressed = syntaxes if n else b"".join(ul._item(0x40, ul._uid(ts)) for ts in TRANSFER_SYNTAXES[:2])
        items.append(ul._item(0x20, bytes((2 * n + 1, 0, 0, 0)) + ul._item(0x30, ul._uid(uid)) + uncompressed))
    roles = b"".join(ul._item(0x54, struct.pack(">H", len(uid)) + ul._uid(uid) + b"\x00\x01")
                     for uid in STORAGE_SOP_CLASSES)
    user = (ul._item(0x51, struct.pack(">L", max_pdu)) + ul._item(0x52, ul._uid(PYNETDICOM_IMPLEMENTATION_UID))
            + roles + ul._item(0x55, PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")))
    items.append(ul._item(0x50, user))
    header = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    return ul._pdu(ul.ASSOCIATE_RQ, header + b"".join(items))


def parse_associate_ac(body: bytearray) -> tuple[dict[int, str], int]:
    """(accepted context id -> transfer syntax, the acceptor's maximum PDU length; 0 = unlimited)."""
    if len(body) < 68:
        raise ul.ProtocolError("A-ASSOCIATE-AC shorter than its fixed fields")
    accepted, max_pdu = {}, 0
    for item_type, value in ul._items(body, 68, len(body)):
        if item_type == 0x21 and len(value) >= 4 and value[2] == ul.ACCEPTANCE:
            for sub_type, sub in ul._items(value, 4, len(value)):
                if sub_type == 0x40:
                    accepted[value[0]] = ul._text(sub)
        elif item_type == 0x50:
            for sub_type, sub in ul._items(value, 0, len(value)):
                if sub_type == 0x51 and len(sub) == 4:
                    max_pdu = struct.unpack(">L", sub)[0]
    return accepted, max_pdu


def command(field: int, message_id: int, sop_class: str, *, responding: bool = False,
            dataset_type: int = NO_DATASET, priority: bool = False) -> bytes:
    """A request command set (Implicit VR LE, tag order, group length first); `responding` puts the
    message ID in (0000,0120) Message ID Being Responded To, as C-CANCEL-RQ needs."""
    parts = []
    if sop_class:
        raw = sop_class.encode("ascii")
        parts.append(lean_scp._element(0x0002, raw + b"\0" if len(raw) % 2 else raw))
    parts.append(lean_scp._element(0x0100, struct.pack("<H", field)))
    parts.append(lean_scp._element(0x0120 if responding else 0x0110, struct.pack("<H", message_id)))
    if priority:
        parts.append(lean_scp._element(0x0700, struct.pack("<H", 0)))  # MEDIUM
    parts.append(lean_scp._element(0x0800, struct.pack("<H", dataset_type)))
    body = b"".join(parts)
    return lean_scp._element(0x0000, struct.pack("<L", len(body))) + body


class _GetAssociation(lean_scp.MessageAssembler):
    """One C-GET on its own association, from connect to release."""

    parse_command = staticmethod(parse_response_command)

    def __init__(self, peer: RemoteAE, local: LocalAE, on_instance, message_id: int):
        self.peer, self.local, self.on_instance, self.message_id = peer, local, on_instance, message_id
        self.sock: socket.socket | None = None
        self.max_pdu = peer.max_pdu or lean_scp.MAX_PDU  # what we accept
        self.peer_max_pdu = 0
        self.contexts: dict[int, str] = {}
        self.sop_class = MODELS["study"][2]
        self.result = MoveResult(message_id=message_id)
        self.refused: list[str] = []  # instances we answered with a failure
        self.established = False
        self.final = False
        self._reset_message()

    # -- association set-up and tear-down ------------------------------------------------------------

    def connect(self) -> None:
        peer, started = self.peer, time.monotonic()
        try:
            sock = socket.create_connection((peer.host, peer.port), timeout=peer.connect_timeout)
        except OSError as exc:
            if isinstance(exc, socket.timeout) or time.monotonic() - started >= peer.connect_timeout * 0.9:
                raise ConnectionFailed(f"No answer from {peer.label} within {peer.connect_timeout:g} s: the host "
                                       "is unreachable or a firewall drops the connection. Check host and port.") from None
            raise ConnectionFailed(f"Cannot connect to {peer.label}: connection refused. Check that the PACS is "
                                   "running and that host and port are right.") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = _tls_args(peer)
        if tls:
            try:
                sock = tls[0].wrap_socket(sock, server_hostname=tls[1])
            except OSError as exc:
                sock.close()
                raise ConnectionFailed(f"The TLS handshake with {peer.label} failed ({exc}). Check that this port "
                                       "speaks DICOM over TLS and that the certificates match.") from None
        self.sock = sock

    def negotiate(self) -> None:
        peer = self.peer
        self.sock.sendall(associate_rq(peer.ae_title, self.local.ae_title, self.sop_class, self.max_pdu))
        try:
            pdu_type, body = ul.read_pdu(self.sock, ul.MAX_ASSOCIATE_RQ)
        except socket.timeout:
            raise DicomTimeout(f"{peer.label} accepted the TCP connection but did not answer the association "
                               f"request within {peer.connect_timeout:g} s. Check that this port is a DICOM service "
                               "and that the PACS is not overloaded.") from None
        except (ul.PeerClosed, OSError):
            raise AssociationAborted(f"{peer.label} closed the connection during the association request. Check "
                                     f"that the PACS knows our AE title '{self.local.ae_title}'.") from None
        if pdu_type == ul.ASSOCIATE_RJ and len(body) >= 4:
            reason = REJECT_REASONS.get((body[2], body[3]), f"source {body[2]}, reason {body[3]}").format(
                local=self.local.ae_title, local_host=self.local.host, local_port=self.local.port,
                called=peer.ae_title)
            error = AssociationRejected(f"{peer.label} rejected the association: {reason}.")
            error.retriable = body[1] == 0x02  # "rejected (transient)"
            raise error
        if pdu_type == ul.ABORT:
            raise AssociationAborted(f"{peer.label} aborted the association request. Check that the PACS knows our "
                                     f"AE title '{self.local.ae_title}' and allows it to connect.")
        if pdu_type != ul.ASSOCIATE_AC:
            raise ul.ProtocolError(f"expected A-ASSOCIATE-AC, got PDU type {pdu_type}", ul.UNEXPECTED_PDU)
        self.contexts, self.peer_max_pdu = parse_associate_ac(body)
        self.established = True
        if 1 not in self.contexts:
            raise DimseFailure(f"{peer.label} does not offer C-GET ({UID(self.sop_class).name}) to us; "
                               "check the services enabled for our AE title on the PACS.")

    def close(self, *, release: bool) -> None:
        """End the association (A-RELEASE when the C-GET finished, else A-ABORT) and the connection."""
        if self.established:
            self._release() if release else self._abort()
        self.sock.close()

    def _release(self) -> None:
        """A PACS that does not answer the A-RELEASE-RQ within the ACSE timeout is simply left."""
        try:
            self.sock.settimeout(self.peer.connect_timeout)
            self.sock.sendall(ul._pdu(ul.RELEASE_RQ, bytes(4)))
            while ul.read_pdu(self.sock, self.max_pdu + 6)[0] not in (ul.RELEASE_RP, ul.ABORT):
                pass
        except (OSError, ul.PeerClosed, ul.ProtocolError):
            log.debug("no A-RELEASE-RP from %s", self.peer.label)

    def _abort(self) -> None:
        try:
            self.sock.sendall(ul.abort(0, 0))  # source 0: the service user
        except OSError:
            pass

    # -- the C-GET ---------------------------------------------------------------------------------------

    def send(self, context_id: int, is_command: bool, data: bytes) -> None:
        self.sock.sendall(ul.p_data(context_id, is_command, data, self.peer_max_pdu))

    def request(self, identifier_bytes: bytes) -> None:
        self.send(1, True, command(C_GET_RQ, self.message_id, self.sop_class, dataset_type=HAS_DATASET,
                                   priority=True))
        self.send(1, False, identifier_bytes)

    def run_until_final(self, deadline: float) -> bool:
        """Serve the C-STOREs and collect the C-GET responses; False if `deadline` passed first."""
        while not self.final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                pdu_type, body = ul.read_pdu(self.sock, self.max_pdu + 6)
            except socket.timeout:
                return False
            if pdu_type == ul.P_DATA_TF:
                for context_id, is_command, is_last, data in ul.pdvs(body):
                    self._fragment(context_id, is_command, is_last, data)
            elif pdu_type == ul.ABORT:
                raise AssociationAborted(f"{self.peer.label} aborted the association during the C-GET. "
                                         "Check the PACS log; try again.")
            else:
                raise ul.ProtocolError(f"unexpected PDU type {pdu_type} during the C-GET", ul.UNEXPECTED_PDU)
        return True

    def cancel(self) -> None:
        self.send(1, True, command(C_CANCEL_RQ, self.message_id, "", responding=True))

    def on_message(self, cmd, context_id: int, parts) -> None:
        field = lean_scp._us(cmd, lean_scp.COMMAND_FIELD)
        if field == C_STORE_RQ:
            self._store(cmd, context_id, parts)
        elif field == C_GET_RSP:
            self._get_response(cmd, context_id, parts)
        else:
            raise ul.ProtocolError(f"unexpected DIMSE command 0x{field or 0:04X} during the C-GET", ul.UNEXPECTED_PDU)

    def _store(self, cmd, context_id: int, parts) -> None:
        message_id = lean_scp._us(cmd, lean_scp.MESSAGE_ID)
        if message_id is None:
            raise ul.ProtocolError("a C-STORE-RQ without a message ID")
        transfer_syntax = self.contexts[context_id]
        sop_class, sop_instance = lean_scp._text(cmd.get(lean_scp.SOP_CLASS)), lean_scp._text(cmd.get(lean_scp.SOP_INSTANCE))
        header = files.part10_bytes(sop_class, sop_instance, transfer_syntax, b"", self.peer.ae_title)
        data = b"".join([header, *parts])
        originator_id = lean_scp._us(cmd, lean_scp.MOVE_ORIGINATOR_ID)
        instance = ReceivedInstance(
            sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=transfer_syntax,
            data=data, calling_ae=self.peer.ae_title,
            move_originator_ae=lean_scp._text(cmd.get(lean_scp.MOVE_ORIGINATOR_AE)) or None,
            move_originator_message_id=originator_id)
        status, comment = deliver(instance, memoryview(data)[len(header):], self.on_instance)
        if category(status) == "Failure":
            self.refused.append(sop_instance)
        self.send(context_id, True, lean_scp.response(0x8001, message_id, sop_class, status, sop_instance, comment))

    def _get_response(self, cmd, context_id: int, parts) -> None:
        status = lean_scp._us(cmd, STATUS)
        if status is None:
            raise ul.ProtocolError("a C-GET-RSP without a status")
        result = self.result
        result.status = status
        if category(status) != "Pending":
            result.remaining = 0  # a final response may leave the count out (PS3.7 C.4.3.1.6)
            self.final = True
        for attr, element in COUNTS:
            value = lean_scp._us(cmd, element)
            if value is not None:
                setattr(result, attr, value)
        if parts:
            ts = UID(self.contexts[context_id])
            identifier = decode(BytesIO(b"".join(parts)), ts.is_implicit_VR, ts.is_little_endian)
            failed = identifier.get("FailedSOPInstanceUIDList")
            if failed:
                result.failed_sop_instance_uids = [text_value(u) for u in ([failed] if isinstance(failed, str)
                                                                           else failed)]


def lean_get(peer: RemoteAE, local: LocalAE, query: dict, on_instance: Callable[[ReceivedInstance], int], *,
             level: str = "STUDY", message_id: int = 1) -> MoveResult:
    """C-GET (Study Root) on an association of its own: each instance goes to `on_instance` (which
    returns a status word; raising makes that instance fail). The same MoveResult and errors as
    apps.dicom.dimse.Association.get; beyond `peer.retrieve_timeout` the C-GET is cancelled, the
    association aborted if the PACS keeps going, and DicomTimeout raised."""
    ds = _identifier(level, query)
    what = f"C-GET of {_what(ds)}"
    get = _GetAssociation(peer, local, on_instance, message_id)
    get.connect()
    try:
        get.negotiate()
        ts = UID(get.contexts[1])
        get.request(encode(ds, ts.is_implicit_VR, ts.is_little_endian))
        if not get.run_until_final(time.monotonic() + peer.retrieve_timeout):
            get.cancel()
            get.run_until_final(time.monotonic() + CANCEL_GRACE_SECONDS)
            raise DicomTimeout(f"The {what} from {peer.label} did not finish within {peer.retrieve_timeout:g} s "
                               f"and was cancelled ({get.result.completed} instances had arrived). Raise the "
                               "timeout for large studies, or check the PACS load.")
    except ul.ProtocolError as exc:
        log.warning("aborting the C-GET association with %s: %s", peer.label, exc)
        get.close(release=False)
        raise AssociationAborted(f"{peer.label} broke the DICOM protocol during the {what} ({exc}).") from None
    except (ul.PeerClosed, OSError) as exc:  # reset, broken pipe, a send that timed out
        get.close(release=False)
        raise AssociationAborted(f"{peer.label} dropped the association during the {what} ({exc}). "
                                 "Check the PACS log; try again.") from None
    except BaseException:
        get.close(release=get.final)
        raise
    get.close(release=True)
    result = get.result
    result.failed_sop_instance_uids = result.failed_sop_instance_uids or list(get.refused)
    attempted = result.completed + result.failed + result.warning
    if category(result.status) in ("Failure", "Unknown") and not attempted:
        raise DimseFailure(f"{peer.label} answered the {what} with failure status {describe(result.status, 'get')}.",
                           status=result.status)
    log.debug("%s on %s: %s", what, peer.label, result)
    return result
