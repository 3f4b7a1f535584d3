"""The DICOM upper layer (PS3.8 section 9) as plain bytes, for both sides of an association: read PDUs
off a socket; the acceptor parses an A-ASSOCIATE-RQ and builds the AC/RJ, the requestor builds the RQ
and parses the AC; both build abort/release PDUs and P-DATA-TF carrying one message part.

Everything a peer sends is checked against the lengths it declares; anything inconsistent raises
ProtocolError, which the caller turns into an A-ABORT.
"""
from __future__ import annotations

import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

from apps.dicom.syntaxes import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = range(1, 8)
MAX_ASSOCIATE_RQ = 1 << 20  # an A-ASSOCIATE-RQ larger than this is not a real one
# Presentation context results (PS3.8 table 9-18)
ACCEPTANCE, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 0, 3, 4
# A-ABORT reasons when we are the service provider (source 2, PS3.8 table 9-26)
UNRECOGNIZED_PDU, UNEXPECTED_PDU, INVALID_PARAMETER = 1, 2, 6


class ProtocolError(Exception):
    """The peer broke PS3.8; `reason` is the A-ABORT reason to send."""

    def __init__(self, message: str, reason: int = INVALID_PARAMETER):
        super().__init__(message)
        self.reason = reason


class PeerClosed(Exception):
    """The TCP connection ended (between or inside PDUs)."""


@dataclass
class ProposedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass
class AssociateRequest:
    protocol_version: int
    called_ae: str
    calling_ae: str
    application_context: str = ""
    contexts: list[ProposedContext] = field(default_factory=list)
    max_pdu: int = 0  # the largest PDU the requestor accepts; 0 = no limit
    implementation_class_uid: str = ""
    raw_header: bytes = b""  # bytes 2..68 of the RQ body, echoed in the AC as PS3.8 9.3.3 asks


FIRST_CHUNK = 64 * 1024  # a PDU buffer starts this large and grows 4x as its bytes arrive
GROWTH = 4  # 4x keeps the copying at most a third of the bytes received (2x: as much again)
# What a buffer grows by: never written, so its pages stay unallocated and it costs no memory; a fresh
# bytes(n) each time would cost its allocation and page faults (twice the read time of a 512 KB PDU).
_ZEROS = memoryview(bytes(4 * 1024 * 1024))


def read_exact(sock: socket.socket, size: int, deadline: float | None = None) -> bytearray:
    """`size` bytes from `sock`. The buffer grows as the bytes arrive, so a peer announcing a large PDU
    and sending little costs what it sent, not what it announced. Past `deadline` (time.monotonic())
    the read fails as the bytes arrive, so a peer trickling a byte now and then cannot hold it for ever."""
    buf, got = bytearray(min(size, FIRST_CHUNK)), 0
    while got < size:
        if got == len(buf):
            more = min(size, GROWTH * len(buf)) - len(buf)
            buf += _ZEROS[:more] if more <= len(_ZEROS) else bytes(more)
        n = sock.recv_into(memoryview(buf)[got:])  # a temporary view: the buffer may grow next turn
        if n == 0:
            raise PeerClosed(f"connection closed after {got} of {size} bytes")
        got += n
        if deadline is not None and got < size and time.monotonic() > deadline:
            raise socket.timeout(f"{got} of {size} bytes arrived in the time allowed")
    return buf


def read_pdu(sock: socket.socket, limit: int, idle_timeout: float | None = None) -> tuple[int, bytearray]:
    """(PDU type, body). `limit` bounds the body size we accept (our advertised max, plus headers). The
    socket's timeout bounds every wait inside a PDU, and a PDU still incomplete after that long fails as
    its bytes arrive (so it takes at most twice the timeout): a trickling peer cannot hold a connection.
    `idle_timeout`, when longer, is how long a peer may stay silent before a PDU begins (looked at each
    time the socket's timeout passes). Nothing here changes the socket's timeout: no system call added."""
    pdu_type, length, deadline = read_pdu_header(sock, limit, idle_timeout)
    return pdu_type, read_exact(sock, length, deadline)


def read_pdu_header(sock: socket.socket, limit: int, idle_timeout: float | None = None
                    ) -> tuple[int, int, float | None]:
    """(PDU type, body length, deadline for the body): read_pdu up to the body, for a caller that reads
    the body itself (a P-DATA-TF's dataset straight into its message buffer)."""
    per_wait, head = sock.gettimeout(), bytearray(6)
    give_up = None if idle_timeout is None else time.monotonic() + idle_timeout
    while True:
        try:
            got = sock.recv_into(head)
            break
        except socket.timeout:
            if give_up is None or time.monotonic() >= give_up:
                raise
    if got == 0:
        raise PeerClosed("connection closed between PDUs")
    deadline = None if per_wait is None else time.monotonic() + per_wait
    if got < 6:
        head[got:] = read_exact(sock, 6 - got, deadline)
    pdu_type, length = head[0], struct.unpack_from(">L", head, 2)[0]
    if pdu_type not in range(1, 8):
        raise ProtocolError(f"unknown PDU type 0x{pdu_type:02X}", UNRECOGNIZED_PDU)
    if length > limit:
        raise ProtocolError(f"PDU of {length} bytes exceeds the {limit} we accept")
    return pdu_type, length, deadline


class BufferedReads:
    """A socket's reads through one buffer: many small PDUs (a C-MOVE's pending responses) cost one
    system call for all that already arrived, not three each. Offers what read_pdu_header, read_exact
    and recv_exact_into use of a socket; a read as large as the buffer goes to the socket directly."""

    def __init__(self, sock: socket.socket, size: int = 64 * 1024):
        self.sock, self.buffer, self.start, self.end = sock, bytearray(size), 0, 0

    def pending(self) -> int:
        """Bytes that arrived and are not read yet."""
        return self.end - self.start

    def recv_into(self, view) -> int:
        if self.start == self.end:
            if len(view) >= len(self.buffer):
                return self.sock.recv_into(view)
            self.start, self.end = 0, self.sock.recv_into(self.buffer)
        n = min(len(view), self.end - self.start)
        view[:n] = memoryview(self.buffer)[self.start:self.start + n]
        self.start += n
        return n

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()


def recv_exact_into(sock: socket.socket, view: memoryview, deadline: float | None = None) -> None:
    """Fill `view` from `sock` (the bytes of one PDV, into the buffer they belong in), under the same
    deadline rule as read_exact."""
    got, size = 0, len(view)
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise PeerClosed(f"connection closed after {got} of {size} bytes")
        got += n
        if deadline is not None and got < size and time.monotonic() > deadline:
            raise socket.timeout(f"{got} of {size} bytes arrived in the time allowed")


def text(raw) -> str:
    return bytes(raw).decode("ascii", "replace").strip(" \x00")


def items(body, pos: int, end: int):
    """(type, value memoryview) for each item or sub-item (1 byte type, 1 reserved, 2 byte length)."""
    view = memoryview(body)
    while pos < end:
        if pos + 4 > end:
            raise ProtocolError("an item header runs past the end of its PDU")
        item_type, length = view[pos], struct.unpack_from(">H", body, pos + 2)[0]
        if pos + 4 + length > end:
            raise ProtocolError(f"item 0x{item_type:02X} claims {length} bytes past the end of its PDU")
        yield item_type, view[pos + 4:pos + 4 + length]
        pos += 4 + length


def sub_items(value, offset: int = 0) -> dict[int, list[memoryview]]:
    """The sub-items of an item, by type, in order."""
    found: dict[int, list[memoryview]] = {}
    for sub_type, sub in items(value, offset, len(value)):
        found.setdefault(sub_type, []).append(sub)
    return found


def _max_length(user_information) -> int:
    """The Maximum Length sub-item of a User Information item; 0 (= no limit) when absent."""
    lengths = [sub for sub in sub_items(user_information).get(0x51, []) if len(sub) == 4]
    return struct.unpack(">L", lengths[0])[0] if lengths else 0


def _check_fixed_fields(body: bytearray, name: str) -> None:
    if len(body) < 68:
        raise ProtocolError(f"{name} shorter than its fixed fields")


def parse_associate_rq(body: bytearray) -> AssociateRequest:
    _check_fixed_fields(body, "A-ASSOCIATE-RQ")
    rq = AssociateRequest(protocol_version=struct.unpack_from(">H", body, 0)[0], called_ae=text(body[4:20]),
                          calling_ae=text(body[20:36]), raw_header=bytes(body[0:68]))
    for item_type, value in items(body, 68, len(body)):
        if item_type == 0x10:
            rq.application_context = text(value)
        elif item_type == 0x20:
            if len(value) < 4:
                raise ProtocolError("presentation context item too short")
            subs = sub_items(value, 4)
            rq.contexts.append(ProposedContext(value[0], "".join(text(s) for s in subs.get(0x30, [])[:1]),
                                               [text(s) for s in subs.get(0x40, [])]))
        elif item_type == 0x50:
            rq.max_pdu = _max_length(value)
            rq.implementation_class_uid = "".join(text(s) for s in sub_items(value).get(0x52, [])[:1])
    return rq


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def encode_pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def uid_bytes(value: str) -> bytes:
    return value.encode("ascii")  # UIDs in items are not padded (PS3.8 9.3.2.2.1)


def _user_information(max_pdu: int, roles: bytes = b"") -> bytes:
    """Maximum length, our implementation class UID and version name, and any role selections."""
    return item(0x50, item(0x51, struct.pack(">L", max_pdu)) + item(0x52, uid_bytes(IMPLEMENTATION_CLASS_UID))
                + roles + item(0x55, IMPLEMENTATION_VERSION_NAME.encode("ascii")))


def associate_ac(rq: AssociateRequest, results: list[tuple[int, int, str]], max_pdu: int) -> bytes:
    """`results`: (context id, result, transfer syntax) for every proposed context, in order."""
    body = [item(0x10, uid_bytes(APPLICATION_CONTEXT))]
    for context_id, result, transfer_syntax in results:
        body.append(item(0x21, bytes((context_id, 0, result, 0)) + item(0x40, uid_bytes(transfer_syntax))))
    body.append(_user_information(max_pdu))
    header = struct.pack(">HH", 1, 0) + rq.raw_header[4:68]  # called/calling AE and reserved, as received
    return encode_pdu(ASSOCIATE_AC, header + b"".join(body))


def associate_rj(result: int, source: int, reason: int) -> bytes:
    return encode_pdu(ASSOCIATE_RJ, bytes((0, result, source, reason)))


def abort(source: int = 2, reason: int = 0) -> bytes:
    return encode_pdu(ABORT, bytes((0, 0, source, reason)))


def release_rq() -> bytes:
    return encode_pdu(RELEASE_RQ, bytes(4))


def release_rp() -> bytes:
    return encode_pdu(RELEASE_RP, bytes(4))


def _ae(title: str) -> bytes:
    return title.encode("ascii")[:16].ljust(16, b" ")


def associate_rq(called: str, calling: str, contexts: list[tuple[str, list[str]]], max_pdu: int, *,
                 scp_role_for: list[str] = ()) -> bytes:
    """A-ASSOCIATE-RQ proposing `contexts` ((abstract syntax, transfer syntaxes), ids 1, 3, 5, ...) and an
    SCP/SCU Role Selection sub-item taking the SCP role for each SOP class in `scp_role_for` (PS3.7 D.3.3.4)."""
    body = [item(0x10, uid_bytes(APPLICATION_CONTEXT))]
    for n, (abstract_syntax, transfer_syntaxes) in enumerate(contexts):
        syntaxes = b"".join(item(0x40, uid_bytes(ts)) for ts in transfer_syntaxes)
        body.append(item(0x20, bytes((2 * n + 1, 0, 0, 0)) + item(0x30, uid_bytes(abstract_syntax)) + syntaxes))
    roles = b"".join(item(0x54, struct.pack(">H", len(uid)) + uid_bytes(uid) + b"\x00\x01") for uid in scp_role_for)
    body.append(_user_information(max_pdu, roles))
    header = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    return encode_pdu(ASSOCIATE_RQ, header + b"".join(body))


def parse_associate_ac(body: bytearray) -> tuple[dict[int, str], int]:
    """(accepted context id -> transfer syntax, the acceptor's maximum PDU length; 0 = unlimited)."""
    _check_fixed_fields(body, "A-ASSOCIATE-AC")
    accepted, max_pdu = {}, 0
    for item_type, value in items(body, 68, len(body)):
        if item_type == 0x21 and len(value) >= 4 and value[2] == ACCEPTANCE:
            for syntax in sub_items(value, 4).get(0x40, [])[:1]:
                accepted[value[0]] = text(syntax)
        elif item_type == 0x50:
            max_pdu = _max_length(value)
    return accepted, max_pdu


def p_data(context_id: int, is_command: bool, data: bytes, max_pdu: int) -> bytes:
    """One message part (command or dataset) as P-DATA-TF PDUs no larger than the peer's maximum
    (0 = unlimited), each carrying one PDV; the last fragment carries the 'last' flag."""
    return b"".join(p_data_buffers(context_id, is_command, data, max_pdu))


def p_data_buffers(context_id: int, is_command: bool, data, max_pdu: int) -> list:
    """p_data as a list of buffers (each PDU's 12-byte header, then a view of its slice of `data`), so a
    large dataset reaches the socket without being copied (send_buffers)."""
    view = memoryview(data)
    room = (max_pdu - 6) if max_pdu else len(view) or 1  # PDV item: 4 length + 1 context + 1 control
    starts = range(0, len(view), room) if len(view) else [0]
    buffers = []
    for n, start in enumerate(starts):
        chunk = view[start:start + room]
        control = (1 if is_command else 0) | (2 if n == len(starts) - 1 else 0)
        buffers += [struct.pack(">BBLLBB", P_DATA_TF, 0, len(chunk) + 6, len(chunk) + 2, context_id, control), chunk]
    return buffers


def send_buffers(sock: socket.socket, buffers: list) -> None:
    """sendall for a list of buffers: scatter-gather (sendmsg) on plain sockets, one joined send on TLS."""
    if not hasattr(sock, "sendmsg") or isinstance(sock, ssl.SSLSocket):
        sock.sendall(b"".join(buffers))
        return
    pending = [memoryview(b).cast("B") for b in buffers if len(b)]
    while pending:
        sent = sock.sendmsg(pending[:512])  # IOV_MAX is 1024 on Linux
        while sent and pending:
            if sent >= len(pending[0]):
                sent -= len(pending.pop(0))
            else:
                pending[0], sent = pending[0][sent:], 0


UNBOUNDED_PDV_BYTES = 4 * 1024 * 1024  # a PDV's size when the peer sets no maximum PDU length


def send_file_p_data(sock: socket.socket, context_id: int, fp, offset: int, length: int, max_pdu: int) -> None:
    """A dataset that stays in its file (bytes `offset`..`offset + length` of `fp`) as P-DATA-TF PDUs:
    each PDU's header from here, its data by socket.sendfile (the kernel copies from the page cache on
    plain sockets; TLS falls back to reads of one PDU), so memory stays flat whatever the file's size."""
    room = (max_pdu - 6) if max_pdu else UNBOUNDED_PDV_BYTES
    position, end = offset, offset + length
    while True:
        size = min(room, end - position)
        control = 2 if position + size >= end else 0
        sock.sendall(struct.pack(">BBLLBB", P_DATA_TF, 0, size + 6, size + 2, context_id, control))
        if size and sock.sendfile(fp, offset=position, count=size) != size:
            raise PeerClosed("the file ended before its dataset was sent")
        position += size
        if control:
            return


def pdvs(body: bytearray):
    """(context id, is command, is last, data memoryview) for each PDV of a P-DATA-TF body."""
    view, pos, end = memoryview(body), 0, len(body)
    while pos < end:
        if pos + 6 > end:
            raise ProtocolError("a PDV header runs past the end of its P-DATA-TF")
        length = struct.unpack_from(">L", body, pos)[0]
        if length < 2 or pos + 4 + length > end:
            raise ProtocolError(f"a PDV claims {length} bytes, its P-DATA-TF holds {end - pos - 4}")
        control = body[pos + 5]
        yield body[pos + 4], bool(control & 1), bool(control & 2), view[pos + 6:pos + 4 + length]
        pos += 4 + length
