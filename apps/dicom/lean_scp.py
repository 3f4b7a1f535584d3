"""A lean Storage SCP written directly on sockets: the receiver's fast path.

pynetdicom spends ~3 ms of Python per received instance (PDU objects, a 1 ms sleep in its reactor,
building the response as a pydicom Dataset); a PACS answering a C-MOVE waits for every C-STORE
response, so that cost is the receiver's throughput. This SCP does only what storage needs
(PS3.8 upper layer in apps/dicom/ul.py; PS3.7 C-STORE and C-ECHO, command sets in Implicit VR
Little Endian), reads PDUs into buffers without decoding the dataset, and hands each instance to the
same callback as apps.dicom.scp.StorageSCP (a ReceivedInstance, the dataset bytes as received), with
the same statuses (apps.dicom.scp.deliver). One thread per association; TCP_NODELAY; large PDUs.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Callable

from pynetdicom import (ALL_TRANSFER_SYNTAXES, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION,
                        AllStoragePresentationContexts)
from pynetdicom.sop_class import Verification

from apps.dicom import files, ul
from apps.dicom.peers import LocalAE
from apps.dicom.scp import ReceivedInstance, deliver

log = logging.getLogger(__name__)

MAX_PDU = 4 * 1024 * 1024  # we accept P-DATA-TF this large: a 512x512 CT travels in one PDU
NETWORK_TIMEOUT = 300.0  # a sender silent this long is gone (as the pynetdicom receiver)
STOP_GRACE_SECONDS = 10.0  # on stop, running associations get this long to finish before they are cut
STORAGE_SOP_CLASSES = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
TRANSFER_SYNTAXES = frozenset(str(ts) for ts in ALL_TRANSFER_SYNTAXES)
C_STORE_RQ, C_ECHO_RQ, C_CANCEL_RQ, NO_DATASET = 0x0001, 0x0030, 0x0FFF, 0x0101
# command set tags (group 0000) we read
SOP_CLASS, COMMAND_FIELD, MESSAGE_ID, DATASET_TYPE, SOP_INSTANCE = 0x0002, 0x0100, 0x0110, 0x0800, 0x1000
MOVE_ORIGINATOR_AE, MOVE_ORIGINATOR_ID = 0x1030, 0x1031


def parse_command(data: bytes) -> dict[int, bytes]:
    """Element (0000,eeee) -> value of an Implicit VR Little Endian command set (PS3.7 6.3.1)."""
    elements, pos = {}, 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise ul.ProtocolError("a command set ends inside an element header")
        group, element, length = struct.unpack_from("<HHL", data, pos)
        if group != 0 or pos + 8 + length > len(data):
            raise ul.ProtocolError(f"malformed command set element ({group:04X},{element:04X})")
        elements[element] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return elements


def _us(elements: dict[int, bytes], element: int) -> int | None:
    value = elements.get(element)
    return struct.unpack("<H", value)[0] if value is not None and len(value) == 2 else None


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace").strip(" \x00")


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0, element, len(value)) + value


def response(command_field: int, message_id: int, sop_class: str, status: int, sop_instance: str = "",
             comment: str = "") -> bytes:
    """A C-STORE-RSP or C-ECHO-RSP command set, elements in tag order, group length first."""
    def uid(text: str) -> bytes:
        raw = text.encode("ascii")
        return raw + b"\0" if len(raw) % 2 else raw

    parts = [_element(0x0002, uid(sop_class)), _element(0x0100, struct.pack("<H", command_field)),
             _element(0x0120, struct.pack("<H", message_id)), _element(0x0800, struct.pack("<H", NO_DATASET)),
             _element(0x0900, struct.pack("<H", status))]
    if comment:
        text = comment[:64].encode("ascii", "replace")
        parts.append(_element(0x0902, text + b" " if len(text) % 2 else text))
    if sop_instance:
        parts.append(_element(0x1000, uid(sop_instance)))
    body = b"".join(parts)
    return _element(0x0000, struct.pack("<L", len(body))) + body


class MessageAssembler:
    """Reassembles DIMSE messages from PDVs (PS3.8 E.2): the command set, then the dataset fragments,
    all on one presentation context. Subclasses hold `contexts` (the accepted ids) and implement
    `parse_command(bytes)` and `on_message(command, context_id, dataset_parts)`."""

    contexts: dict

    def _reset_message(self) -> None:
        self.context_id = None
        self.command_parts: list[bytes] = []
        self.command: dict[int, bytes] | None = None
        self.dataset_parts: list = []

    def _fragment(self, context_id: int, is_command: bool, is_last: bool, data: memoryview) -> None:
        if context_id not in self.contexts:
            raise ul.ProtocolError(f"a PDV on presentation context {context_id}, which was not accepted")
        if self.context_id is None:
            self.context_id = context_id
        elif context_id != self.context_id:
            raise ul.ProtocolError("a message changed presentation context midway")
        if is_command:
            if self.command is not None:
                raise ul.ProtocolError("a command fragment where the dataset was expected", ul.UNEXPECTED_PDU)
            self.command_parts.append(bytes(data))
            if is_last:
                self.command = self.parse_command(b"".join(self.command_parts))
                if _us(self.command, DATASET_TYPE) == NO_DATASET:
                    self._complete()
        else:
            if self.command is None or _us(self.command, DATASET_TYPE) == NO_DATASET:
                raise ul.ProtocolError("a dataset fragment without a command announcing it", ul.UNEXPECTED_PDU)
            self.dataset_parts.append(data)  # a view into its PDU's buffer: no copy until the file is built
            if is_last:
                self._complete()

    def _complete(self) -> None:
        command, context_id, parts = self.command, self.context_id, self.dataset_parts
        self._reset_message()
        self.on_message(command, context_id, parts)


class _Association(MessageAssembler):
    """One accepted connection: negotiate, then answer C-STORE/C-ECHO until release or abort."""

    parse_command = staticmethod(parse_command)

    def __init__(self, sock: socket.socket, local: LocalAE, on_instance):
        self.sock, self.local, self.on_instance = sock, local, on_instance
        self.calling_ae = ""
        self.peer_max_pdu = 0
        self.contexts: dict[int, tuple[str, str]] = {}  # accepted id -> (abstract syntax, transfer syntax)
        self._reset_message()

    def run(self) -> None:
        try:
            if self._negotiate():
                self._serve()
        except ul.PeerClosed as exc:
            log.debug("association with %s ended: %s", self.calling_ae or "a peer", exc)
        except ul.ProtocolError as exc:
            log.warning("aborting the association with %s: %s", self.calling_ae or "a peer", exc)
            self._send_quietly(ul.abort(2, exc.reason))
            self._drain()
        except socket.timeout:
            log.warning("aborting the association with %s: silent for %g s", self.calling_ae or "a peer",
                        NETWORK_TIMEOUT)
            self._send_quietly(ul.abort(2, 0))
        except OSError as exc:
            log.debug("association with %s lost: %s", self.calling_ae or "a peer", exc)
        except Exception:  # a bug here must cost one association, never the receiver
            log.exception("receiver error on the association with %s", self.calling_ae or "a peer")
            self._send_quietly(ul.abort(2, 0))
        finally:
            self.sock.close()

    def _drain(self) -> None:
        """Read what the peer already sent before closing: closing with unread data sends a TCP reset,
        which can destroy our A-ABORT before the peer reads it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(1.0)
            for _ in range(256):  # at most ~16 MB, at most a second of silence
                if not self.sock.recv(65536):
                    return
        except OSError:
            pass

    def _send_quietly(self, pdu: bytes) -> None:
        try:
            self.sock.sendall(pdu)
        except OSError:
            pass

    def _negotiate(self) -> bool:
        pdu_type, body = ul.read_pdu(self.sock, ul.MAX_ASSOCIATE_RQ)
        if pdu_type != ul.ASSOCIATE_RQ:
            raise ul.ProtocolError(f"expected A-ASSOCIATE-RQ, got PDU type {pdu_type}", ul.UNEXPECTED_PDU)
        rq = ul.parse_associate_rq(body)
        self.calling_ae, self.peer_max_pdu = rq.calling_ae, rq.max_pdu
        rejection = None
        if not rq.protocol_version & 1:
            rejection = (1, 2, 2)  # ACSE: protocol version not supported
        elif rq.application_context != ul.APPLICATION_CONTEXT:
            rejection = (1, 1, 2)  # application context name not supported
        elif rq.called_ae != self.local.ae_title:
            rejection = (1, 1, 7)  # called AE title not recognised: a misconfigured PACS should hear so
        if rejection:
            log.warning("rejected an association from %s calling %s (reason %d)", rq.calling_ae, rq.called_ae,
                        rejection[2])
            self.sock.sendall(ul.associate_rj(*rejection))
            return False
        results = []
        for cx in rq.contexts:
            first = cx.transfer_syntaxes[0] if cx.transfer_syntaxes else ""
            if cx.abstract_syntax not in STORAGE_SOP_CLASSES and cx.abstract_syntax != Verification:
                results.append((cx.context_id, ul.ABSTRACT_SYNTAX_NOT_SUPPORTED, first))
                continue
            chosen = next((ts for ts in cx.transfer_syntaxes if ts in TRANSFER_SYNTAXES), None)
            if chosen is None:
                results.append((cx.context_id, ul.TRANSFER_SYNTAXES_NOT_SUPPORTED, first))
            else:
                results.append((cx.context_id, ul.ACCEPTANCE, chosen))
                self.contexts[cx.context_id] = (cx.abstract_syntax, chosen)
        self.sock.sendall(ul.associate_ac(rq, results, MAX_PDU, PYNETDICOM_IMPLEMENTATION_UID,
                                          PYNETDICOM_IMPLEMENTATION_VERSION))
        log.debug("association from %s: %d of %d contexts accepted", rq.calling_ae, len(self.contexts),
                  len(rq.contexts))
        return True

    def _serve(self) -> None:
        while True:
            pdu_type, body = ul.read_pdu(self.sock, MAX_PDU)
            if pdu_type == ul.P_DATA_TF:
                for context_id, is_command, is_last, data in ul.pdvs(body):
                    self._fragment(context_id, is_command, is_last, data)
            elif pdu_type == ul.RELEASE_RQ:
                self.sock.sendall(ul.release_rp())
                return
            elif pdu_type == ul.ABORT:
                log.info("%s aborted the association", self.calling_ae)
                return
            else:
                raise ul.ProtocolError(f"unexpected PDU type {pdu_type} during the association", ul.UNEXPECTED_PDU)

    def on_message(self, command, context_id: int, parts) -> None:
        field, message_id = _us(command, COMMAND_FIELD), _us(command, MESSAGE_ID)
        if message_id is None:
            raise ul.ProtocolError("a request without a message ID")
        abstract_syntax, transfer_syntax = self.contexts[context_id]
        if field == C_STORE_RQ:
            sop_class = _text(command.get(SOP_CLASS)) or abstract_syntax
            reply = self._store(command, sop_class, transfer_syntax, parts)
            rsp = response(0x8001, message_id, sop_class, *reply)
        elif field == C_ECHO_RQ:
            rsp = response(0x8030, message_id, abstract_syntax, 0x0000)
        elif field == C_CANCEL_RQ:
            return  # nothing of ours to cancel
        else:  # a service this SCP does not offer: "unrecognized operation"
            rsp = response((field or 0) | 0x8000, message_id, abstract_syntax, 0x0211)
        self.sock.sendall(ul.p_data(context_id, True, rsp, self.peer_max_pdu))

    def _store(self, command, sop_class: str, transfer_syntax: str, parts) -> tuple[int, str, str]:
        sop_instance = _text(command.get(SOP_INSTANCE))
        originator_id = _us(command, MOVE_ORIGINATOR_ID)
        header = files.part10_bytes(sop_class, sop_instance, transfer_syntax, b"", self.calling_ae)
        data = b"".join([header, *parts])
        instance = ReceivedInstance(
            sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=transfer_syntax,
            data=data, calling_ae=self.calling_ae,
            move_originator_ae=_text(command.get(MOVE_ORIGINATOR_AE)) or None,
            move_originator_message_id=originator_id)
        status, comment = deliver(instance, memoryview(data)[len(header):], self.on_instance)
        return status, sop_instance, comment


class LeanStorageSCP:
    """Same interface as apps.dicom.scp.StorageSCP: `bind_host`:`local.port` (0 = any free port),
    called AE title `local.ae_title`, `on_instance(ReceivedInstance) -> status` (thread-safe)."""

    def __init__(self, local: LocalAE, on_instance: Callable[[ReceivedInstance], int], *,
                 bind_host: str = "127.0.0.1"):
        self.local, self.bind_host, self._on_instance = local, bind_host, on_instance
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._active: dict[threading.Thread, socket.socket] = {}

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the Storage SCP is not started")
        return self._listener.getsockname()[1]

    def start(self) -> "LeanStorageSCP":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.bind_host, self.local.port))
        listener.listen(64)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, args=(listener,), name="scp-accept", daemon=True)
        self._acceptor.start()
        log.debug("lean Storage SCP %s listening on %s:%s", self.local.ae_title, self.bind_host, self.port)
        return self

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was shut down by stop()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(NETWORK_TIMEOUT)
            thread = threading.Thread(target=self._run, args=(conn,), name="scp-association", daemon=True)
            with self._lock:
                self._active[thread] = conn
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            _Association(conn, self.local, self._on_instance).run()
        finally:
            with self._lock:
                self._active.pop(threading.current_thread(), None)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting, let running associations finish for `grace` seconds, then cut them."""
        if self._listener is None:
            return
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self._listener.close()
        self._acceptor.join(5)
        self._listener = None
        with self._lock:
            running = list(self._active.items())
        for thread, conn in running:
            thread.join(grace / max(len(running), 1))
            if thread.is_alive():
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                thread.join(5)

    def __enter__(self) -> "LeanStorageSCP":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
