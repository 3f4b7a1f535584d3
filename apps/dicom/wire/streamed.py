"""A C-STORE too large to hold: its header checked and handed on as soon as it is in, the rest streamed.

An instance may be gigabytes (whole-slide images, long cine loops, tomosynthesis). Once a message's dataset
passes `STREAM_AFTER` bytes without being complete, and the elements before its pixel data are all in
(files.header_end), the engine (wire/messages.py) stops buffering it: the header goes through the same
checks as a whole instance (received.deliver: structure, identity, the callback's AE title, move key,
study, series and PatientID checks), and the callback answers with an InstanceSink (received.py) that
takes the rest as it arrives. What follows the header is followed as it passes (PixelCheck: the pixel data
element's declared length, or its fragments up to the sequence delimiter), so a dataset cut short is still
refused, and its sink discarded: nothing of a refused instance stays staged. An instance refused on its
header is read to its end and dropped, then answered. Memory per association: the header, one buffer of
`CHUNK` bytes, and what may follow the pixel data (at most `TRAILER_MAX`)."""
from __future__ import annotations

import functools
import logging
import struct
from typing import Callable

from apps.dicom import files
from apps.dicom.element_codec import ITEM, SEQUENCE_END, UNDEFINED
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.wire import commands
from apps.dicom.wire.pdu import ProtocolError, recv_exact_into
from apps.dicom.wire.received import PeerCutOff, ReceivedInstance, deliver

log = logging.getLogger(__name__)

STREAM_AFTER = 8 << 20  # a dataset this large and not complete yet is streamed from here on
CHUNK = 1 << 20  # what one read of a streamed instance takes from the socket before it goes to its sink
TRAILER_MAX = 1 << 20  # elements after the pixel data (digital signatures, padding) kept to be checked


@functools.lru_cache(maxsize=64)
def _encoding(transfer_syntax_uid: str) -> tuple[str, bool]:
    """(struct byte order, implicit VR) of a transfer syntax (an unknown one: explicit little endian)."""
    ts = files._uid(transfer_syntax_uid)
    if not ts.is_transfer_syntax:
        return "<", False
    return ("<" if ts.is_little_endian else ">"), ts.is_implicit_VR


class PixelCheck:
    """Follows the pixel data element from its first byte as the bytes pass, without keeping them:
    `feed(view)` says how many of them belong to the element; what follows it is kept (`trailer`) and
    walked at `finish()`, which raises InvalidDicomFile for a dataset cut short."""

    def __init__(self, transfer_syntax_uid: str):
        self.syntax = transfer_syntax_uid
        self.prefix, self.implicit = _encoding(transfer_syntax_uid)
        self.pending = bytearray()  # an element or item header split across two reads
        self.skip = 0  # bytes of a value still to pass
        self.state = "element"  # element header, then "value" (defined length) or "items", then "done"
        self.passed = 0
        self.trailer = bytearray()

    def feed(self, view) -> int:
        view = memoryview(view).cast("B")
        pos, size = 0, len(view)
        while pos < size and self.state != "done":
            if self.skip:
                step = min(self.skip, size - pos)
                self.skip -= step
                pos += step
                if not self.skip and self.state == "value":
                    self.state = "done"
                continue
            need = self._header_size() - len(self.pending)
            take = min(need, size - pos)
            self.pending += view[pos:pos + take]
            pos += take
            if take == need:
                self._header(bytes(self.pending))
                self.pending.clear()
        if self.state == "done" and pos < size:
            if len(self.trailer) + size - pos > TRAILER_MAX:
                raise InvalidDicomFile(f"more than {TRAILER_MAX} bytes follow the pixel data")
            self.trailer += view[pos:]
        self.passed += pos
        return pos

    def _header_size(self) -> int:
        if self.state == "element" and not self.implicit:
            return 12  # pixel data has a long VR (OB, OW, OF, OD): tag, VR, reserved, 4-byte length
        return 8  # an implicit VR element, an item or a delimiter

    def _header(self, raw: bytes) -> None:
        p = self.prefix
        if self.state == "element":
            length = struct.unpack(p + "L", raw[-4:])[0]
            if length == UNDEFINED:
                self.state = "items"
            else:
                self.state, self.skip = "value", length
                if not length:
                    self.state = "done"
            return
        group, element, length = struct.unpack(p + "HHL", raw)
        tag = group << 16 | element
        if tag == SEQUENCE_END:
            self.state = "done"
        elif tag != ITEM or length == UNDEFINED:
            raise InvalidDicomFile(f"broken encapsulated pixel data ({group:04X},{element:04X}) after byte "
                                   f"{self.passed}")
        else:
            self.skip = length

    def finish(self) -> None:
        if self.state != "done" or self.skip:
            raise InvalidDicomFile(f"truncated: the pixel data ends after {self.passed} bytes")
        if self.trailer:
            files.check_dataset_bytes(bytes(self.trailer), self.syntax)


class StreamedStore:
    """One C-STORE being streamed: its answer (status, comment) decided on the header, the sink (or None:
    the rest is read and dropped) and the check of what follows. `receive` takes a PDV's dataset bytes from
    the socket, `finish` ends it (commit or discard, then the answer), `abandon` drops it when the
    association ends midway."""

    def __init__(self, instance: ReceivedInstance, status: int, comment: str, check: PixelCheck,
                 send: Callable[[bytes], None], message_id: int):
        self.instance, self.status, self.comment, self.check = instance, status, comment, check
        self.sink = instance.sink if status == 0x0000 or status & 0xF000 == 0xB000 else None
        self.send, self.message_id = send, message_id
        self.buffer = bytearray(CHUNK)

    def feed(self, view) -> None:
        """Bytes of the dataset (the part of the header buffer after the header, then each read)."""
        try:
            part = self.check.feed(view)
        except InvalidDicomFile as exc:
            self._refuse(0xC000, f"Malformed dataset: {exc}")
            return
        if self.sink is not None:
            try:
                self.sink.write(memoryview(view)[:part])
            except OSError as exc:
                log.error("cannot keep instance %s: %s", self.instance.sop_instance_uid, exc)
                self._refuse(0xA700, f"Cannot store: {exc.strerror or exc}")

    def receive(self, sock, size: int, deadline: float | None) -> None:
        view = memoryview(self.buffer)
        while size:
            step = min(size, CHUNK)
            recv_exact_into(sock, view[:step], deadline)
            self.feed(view[:step])
            size -= step

    def _refuse(self, status: int, comment: str) -> None:
        if self.status == 0x0000 or self.status & 0xF000 == 0xB000:
            log.warning("refused a streamed instance from %s: %s", self.instance.calling_ae, comment)
            self.status, self.comment = status, comment
        self.abandon()

    def abandon(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.discard()

    def finish(self) -> int:
        """The last fragment is in: check, commit (or discard), answer. Returns the status answered;
        raises PeerCutOff once answered when the callback cut the peer off."""
        try:
            self.check.finish()
        except InvalidDicomFile as exc:
            self._refuse(0xC000, f"Malformed dataset: {exc}")
        if self.sink is not None:
            sink, self.sink = self.sink, None
            try:
                sink.commit(bytes(self.check.trailer))
            except OSError as exc:
                log.error("cannot keep instance %s: %s", self.instance.sop_instance_uid, exc)
                sink.discard()
                self.status, self.comment = 0xA700, f"Cannot store: {exc.strerror or exc}"
            except Exception as exc:  # a receiver bug must cost one instance, not the association
                log.exception("receiver failed on instance %s", self.instance.sop_instance_uid)
                sink.discard()
                self.status, self.comment = 0xC000, f"Receiver error: {type(exc).__name__}"
        instance = self.instance
        self.send(commands.response(commands.C_STORE_RSP, self.message_id, instance.sop_class_uid, self.status,
                                    instance.sop_instance_uid, self.comment))
        if instance.cut_off:
            raise PeerCutOff(f"{instance.calling_ae} at {instance.peer_address} was cut off")
        return self.status


def start(command: dict[int, bytes], head, *, sop_class: str, transfer_syntax: str, sender_ae: str,
          on_instance, send: Callable[[bytes], None], peer_address: str = "") -> StreamedStore | None:
    """A StreamedStore for the C-STORE-RQ `command` whose dataset so far is `head` (a view), once its header
    is complete; None while it is not (the engine keeps buffering). The header goes through deliver (the
    same checks as a whole instance); the callback sees `instance.streamed` and sets `instance.sink`."""
    if files._uid(transfer_syntax).is_deflated:
        return None
    try:
        end = files.header_end(head, transfer_syntax)
    except InvalidDicomFile as exc:
        end, broken = 0, f"Malformed dataset: {exc}"
    else:
        broken = ""
    if end is None:
        return None
    message_id = commands.us(command, commands.MESSAGE_ID)
    if message_id is None:
        raise ProtocolError("a C-STORE-RQ without a message ID")
    sop_class = commands.text(command.get(commands.AFFECTED_SOP_CLASS)) or sop_class
    sop_instance = commands.text(command.get(commands.AFFECTED_SOP_INSTANCE))
    header = head[:end]
    meta = files.part10_bytes(sop_class, sop_instance, transfer_syntax, b"", sender_ae)
    instance = ReceivedInstance(
        sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=transfer_syntax,
        chunks=(meta, header), calling_ae=sender_ae, peer_address=peer_address, streamed=True,
        move_originator_ae=commands.text(command.get(commands.MOVE_ORIGINATOR_AE)) or None,
        move_originator_message_id=commands.us(command, commands.MOVE_ORIGINATOR_ID))
    status, comment = (0xC000, broken) if broken else deliver(instance, header, on_instance)
    if (status == 0x0000 or status & 0xF000 == 0xB000) and instance.sink is None:
        status, comment = 0xC000, "This receiver cannot take an instance this large"
    stream = StreamedStore(instance, status, comment, PixelCheck(transfer_syntax), send, message_id)
    instance.chunks = ()  # the sink took the header; it is not read again
    stream.feed(head[end:])
    return stream
