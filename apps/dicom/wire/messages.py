"""DIMSE messages over PDVs: reassembling a message from its fragments (PS3.8 annex E.2), and the one way a
wire engine answers a C-STORE-RQ (the Storage SCP for a C-MOVE, the C-GET SCU for its sub-operations)."""
from __future__ import annotations

import collections
import mmap
import socket
import struct
from typing import Callable

from apps.dicom import files
from apps.dicom.wire import commands
from apps.dicom.wire.pdu import UNEXPECTED_PDU, ProtocolError, read_exact, recv_exact_into
from apps.dicom.wire.received import PeerCutOff, ReceivedInstance, deliver
from apps.dicom.wire.streamed import STREAM_AFTER, StreamedStore

FIRST_CAPACITY = 1 << 20  # address space only: a page costs memory once a byte of it arrived
POOLED_BUFFERS, POOLED_CAPACITY = 8, 16 << 20  # buffers kept for reuse, and the largest one kept


class DatasetBuffer:
    """One message's dataset in one anonymous memory map, its fragments received straight into it.

    A PACS sends a CT instance in four or five PDUs (DCMTK's 128 KB), so receiving each into a buffer
    of its own and joining them cost two extra copies of every byte, and fresh buffers page faults.
    Here the bytes go from the socket to where the file is written from, once. The map grows as
    fragments announce themselves (address space, not memory), and once the instance is written, the
    buffer goes back to a small pool (release), so its pages are reused instead of faulted in again."""

    __slots__ = ("map", "length")

    def __init__(self):
        self.map, self.length = _anonymous_map(FIRST_CAPACITY), 0

    def room_for(self, size: int) -> memoryview:
        """A view of the next `size` bytes, growing the map when needed. The caller fills it, then
        calls filled(size); no other view of the map may be alive while it grows."""
        needed = self.length + size
        if needed > len(self.map):
            capacity = max(needed, 2 * len(self.map))
            try:
                self.map.resize(capacity)
            except BufferError:  # a view of an earlier message lives on (a test kept it): a map of its own
                old, self.map = self.map, _anonymous_map(capacity)
                self.map[:self.length] = old[:self.length]
        return memoryview(self.map)[self.length:needed]

    def filled(self, size: int) -> None:
        self.length += size

    def view(self) -> memoryview:
        return memoryview(self.map)[:self.length]


def _anonymous_map(size: int) -> mmap.mmap:
    """Private, not shared: a shared anonymous map grown by resize() (mremap) has no pages past its first
    size, and a read into them fails with EFAULT (or SIGBUS), so any dataset over FIRST_CAPACITY did."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


_pool: collections.deque = collections.deque(maxlen=POOLED_BUFFERS)  # appends and pops are atomic


def _fresh_buffer() -> DatasetBuffer:
    try:
        buffer = _pool.pop()
    except IndexError:
        return DatasetBuffer()
    buffer.length = 0
    return buffer


def _release(buffer: DatasetBuffer) -> None:
    """The instance in `buffer` is written: its pages may hold the next one."""
    if len(buffer.map) <= POOLED_CAPACITY:
        _pool.append(buffer)


class MessageAssembler:
    """Reassembles DIMSE messages from PDVs: the command set, then the dataset fragments, all on one
    presentation context. Subclasses hold `contexts` (the accepted ids) and implement
    `on_message(command, context_id, dataset_parts, release)`: the dataset is one view of its
    DatasetBuffer, and `release()` (None without a dataset), called once the dataset is no longer
    needed, lets the buffer hold a later message; not calling it only forgoes the reuse."""

    contexts: dict
    stream_after = STREAM_AFTER  # a C-STORE's dataset this large and not complete: streamed (begin_stream)

    def reset_message(self) -> None:
        self.context_id = None
        self.command_parts: list[bytes] = []
        self.command: dict[int, bytes] | None = None
        self.dataset: DatasetBuffer | None = None
        self.stream: StreamedStore | None = None
        self.stream_tried_at = 0  # the dataset's length when begin_stream last found its header incomplete

    def abandon_message(self) -> None:
        """The association ends with a message half received: a streamed instance leaves nothing behind."""
        stream, self.stream = getattr(self, "stream", None), None
        if stream is not None:
            stream.abandon()

    def receive_p_data(self, sock: socket.socket, length: int, deadline: float | None) -> None:
        """Every PDV of a P-DATA-TF whose `length`-byte body is still in `sock` (read_pdu_header was
        read): command fragments into small buffers, dataset fragments straight into their message's
        DatasetBuffer. The same checks as pdu.pdvs: each PDV must fit the PDU that announced it."""
        remaining = length
        while remaining:
            if remaining < 6:
                raise ProtocolError("a PDV header runs past the end of its P-DATA-TF")
            head = read_exact(sock, 6, deadline)
            pdv_length, context_id, control = struct.unpack(">LBB", head)
            if pdv_length < 2 or 4 + pdv_length > remaining:
                raise ProtocolError(f"a PDV claims {pdv_length} bytes, its P-DATA-TF holds {remaining - 4}")
            size, is_last = pdv_length - 2, bool(control & 2)
            if control & 1:
                self.on_command_fragment(context_id, is_last, read_exact(sock, size, deadline))
            elif self.stream is not None:
                self._on_context(context_id)
                self.stream.receive(sock, size, deadline)
                if is_last:
                    stream = self.stream
                    self.reset_message()
                    self.on_streamed(stream)
            else:
                room = self._dataset_room(context_id, size)
                recv_exact_into(sock, room, deadline)
                room.release()
                self._dataset_filled(size, is_last)
            remaining -= 4 + pdv_length

    def _on_context(self, context_id: int) -> None:
        if context_id not in self.contexts:
            raise ProtocolError(f"a PDV on presentation context {context_id}, which was not accepted")
        if self.context_id is None:
            self.context_id = context_id
        elif context_id != self.context_id:
            raise ProtocolError("a message changed presentation context midway")

    def on_command_fragment(self, context_id: int, is_last: bool, data) -> None:
        self._on_context(context_id)
        if self.command is not None:
            raise ProtocolError("a command fragment where the dataset was expected", UNEXPECTED_PDU)
        self.command_parts.append(bytes(data))
        if is_last:
            self.command = commands.decode(b"".join(self.command_parts))
            if commands.us(self.command, commands.DATASET_TYPE) == commands.NO_DATASET:
                self._complete()

    def _dataset_room(self, context_id: int, size: int) -> memoryview:
        self._on_context(context_id)
        if self.command is None or commands.us(self.command, commands.DATASET_TYPE) == commands.NO_DATASET:
            raise ProtocolError("a dataset fragment without a command announcing it", UNEXPECTED_PDU)
        if self.dataset is None:
            self.dataset = _fresh_buffer()
        return self.dataset.room_for(size)

    def _dataset_filled(self, size: int, is_last: bool) -> None:
        self.dataset.filled(size)
        if is_last:
            self._complete()
        elif self.dataset.length >= max(self.stream_after, self.stream_tried_at * 2) and \
                commands.us(self.command, commands.COMMAND_FIELD) == commands.C_STORE_RQ:
            # tried again only once the buffer doubled: a large dataset without pixel data (whose header
            # never ends) costs two walks over its bytes, not one per fragment
            self.stream_tried_at = self.dataset.length
            stream = self.begin_stream(self.command, self.context_id, self.dataset.view())
            if stream is not None:  # the header is checked and handed on; the buffer is free again
                self.stream, buffer, self.dataset = stream, self.dataset, None
                _release(buffer)

    def begin_stream(self, command: dict[int, bytes], context_id: int, head) -> StreamedStore | None:
        """A large C-STORE's dataset so far (`head`, a view): a StreamedStore taking the rest (wire/streamed.py),
        or None to keep buffering it whole (engines that take no instances, or a header not complete yet)."""
        return None

    def on_streamed(self, stream: StreamedStore) -> None:
        """The last fragment of a streamed C-STORE is in: commit and answer it (StreamedStore.finish)."""
        stream.finish()

    def _complete(self) -> None:
        command, context_id, buffer = self.command, self.context_id, self.dataset
        self.reset_message()
        if buffer is None:
            self.on_message(command, context_id, [], None)
        else:
            self.on_message(command, context_id, [buffer.view()], lambda: _release(buffer))

    def on_message(self, command: dict[int, bytes], context_id: int, parts: list, release=None) -> None:
        raise NotImplementedError


def answer_c_store(command: dict[int, bytes], parts: list, *, sop_class: str, transfer_syntax: str,
                   sender_ae: str, on_instance: Callable[[ReceivedInstance], int] | None,
                   send: Callable[[bytes], None], release: Callable[[], None] | None = None,
                   peer_address: str = "") -> int:
    """Build the received instance (our file meta + the dataset bytes as they arrived), hand it to
    `on_instance` through the shared checks of `deliver`, `send` the C-STORE-RSP command set, then do what
    the callback left for after the answer (ReceivedInstance.answered), even when sending failed.
    Returns the status answered; raises PeerCutOff after answering when the callback cut the peer off."""
    message_id = commands.us(command, commands.MESSAGE_ID)
    if message_id is None:
        raise ProtocolError("a C-STORE-RQ without a message ID")
    sop_class = commands.text(command.get(commands.AFFECTED_SOP_CLASS)) or sop_class
    sop_instance = commands.text(command.get(commands.AFFECTED_SOP_INSTANCE))
    header = files.part10_bytes(sop_class, sop_instance, transfer_syntax, b"", sender_ae)
    dataset = parts[0] if parts else b""  # the assembler hands over the dataset in one piece
    instance = ReceivedInstance(
        sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=transfer_syntax,
        chunks=(header, dataset), calling_ae=sender_ae, release=release, peer_address=peer_address,
        move_originator_ae=commands.text(command.get(commands.MOVE_ORIGINATOR_AE)) or None,
        move_originator_message_id=commands.us(command, commands.MOVE_ORIGINATOR_ID))
    try:
        status, comment = deliver(instance, dataset, on_instance)
        send(commands.response(commands.C_STORE_RSP, message_id, sop_class, status, sop_instance, comment))
    finally:
        instance.answered()
    if instance.cut_off:
        raise PeerCutOff(f"{sender_ae} at {peer_address} was cut off")
    return status
