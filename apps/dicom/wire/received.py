"""What a Storage SCP (the receiver, wire/storage_scp.py) or a C-GET (wire/get_scu.py) hands on: one received
instance as the bytes that arrived, what a peer may cost the receiver, and the checks every received
instance passes before a callback sees it.

A callback that raises costs one instance a failure status (0xA700 for a disk problem, 0xC000 for
anything else), never the server; malformed data is refused with 0xC000 before the callback runs.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from apps.dicom import files
from apps.dicom.errors import InvalidDicomFile

log = logging.getLogger(__name__)


class InstanceSink(Protocol):
    """Where one streamed instance goes (wire/streamed.py): made by the callback, which has given it the
    head (file meta and header, `ReceivedInstance.chunks`); `write` takes the rest of the dataset as it
    arrives, `commit(trailer)` keeps the instance once it is complete (`trailer`: the elements after the
    pixel data, usually none), `discard` leaves nothing behind (refused, cut short, the association gone)."""

    def write(self, data) -> None: ...

    def commit(self, trailer: bytes = b"") -> None: ...

    def discard(self) -> None: ...


@dataclass
class ReceivedInstance:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    # A complete Part-10 file (preamble + file meta + the dataset exactly as received) in pieces: the
    # socket-level engines keep the dataset as views of the PDUs it came in, and writing the pieces
    # (os.writev) spares copying half a megabyte per instance while the PACS waits for our answer.
    chunks: tuple
    calling_ae: str
    move_originator_ae: str | None = None
    move_originator_message_id: int | None = None
    identity: files.DatasetIdentity = files.DatasetIdentity()  # what the dataset itself says it is
    peer_address: str = ""  # the IP address the association came from ("" for a C-GET: our own association)
    cut_off: bool = False  # the callback refused it and wants the association aborted once answered
    # Called once the chunks are written and nothing reads them again: their buffer may then hold a later
    # instance (wire/messages.py). Only whoever wrote the instance calls it, and then never reads it.
    release: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    # A large instance whose dataset is still arriving: `chunks` hold the file meta and the header (the
    # elements before the pixel data), and the callback, instead of writing them, sets `sink` to take them
    # and the rest (InstanceSink); the instance is answered once the sink has committed it.
    streamed: bool = False
    sink: InstanceSink | None = field(default=None, repr=False, compare=False)
    # What the callback left for once the C-STORE response is sent (the staging write of a live move's
    # instance, staging.AnsweredWrites): the engine calls answered() right after sending it.
    after_answer: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def answered(self) -> None:
        """The response is sent (or sending it failed): do what was left for after it, once."""
        after, self.after_answer = self.after_answer, None
        if after is not None:
            after()

    def written(self) -> None:
        """The instance is on disk: its buffer may be reused (see `release`)."""
        release, self.release = self.release, None
        if release is not None:
            release()

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    @property
    def data(self) -> bytes:
        """The file as one bytes object (a copy: for readers, not for the receiving path)."""
        return b"".join(self.chunks)

    @property
    def self_consistent(self) -> bool:
        """The dataset names the SOP Instance UID it was sent under."""
        return self.identity.sop == self.sop_instance_uid


@dataclass(frozen=True)
class ReceiverLimits:
    """What peers may cost a Storage SCP. `max_associations` at once: one more is rejected as transient,
    "local limit exceeded", and a PACS retries later. `idle_timeout`: seconds a peer may stay silent
    between PDUs. `pdu_timeout`: seconds any wait inside a PDU may last, and a PDU still incomplete after
    that long is cut as its bytes arrive (so it takes at most twice that); the A-ASSOCIATE-RQ must begin
    that soon after connecting (the ARTIM timer of PS3.8). A peer trickling bytes cannot hold a connection."""
    max_associations: int = 32
    idle_timeout: float = 300.0
    pdu_timeout: float = 60.0
    # Seconds a connection may stay silent before its association request, and an association before it
    # sent an instance we kept: one holding a slot for nothing is cut this soon.
    quiet_timeout: float = 10.0
    # Associations at once from one address that is not a configured server's (0: no limit of its own),
    # and connections negotiating at once from any one address.
    per_address: int = 0
    handshakes_per_address: int = 8


class Throttle:
    """At most one log line per key (a peer address) per `seconds`: `due(key)` is None while quiet, else how
    many events of that key went unlogged before this one. A sweeping peer writes one line a minute, not
    one per guess."""

    def __init__(self, seconds: float = 60.0, keys: int = 4096):
        self.seconds, self.keys = seconds, keys
        self._lock = threading.Lock()
        self._seen: dict = {}  # key -> (logged at, events kept quiet since)

    def due(self, key) -> int | None:
        now = time.monotonic()
        with self._lock:
            logged_at, quiet = self._seen.get(key, (None, 0))
            if logged_at is not None and now - logged_at < self.seconds:
                self._seen[key] = (logged_at, quiet + 1)
                return None
            if len(self._seen) >= self.keys:
                self._seen.clear()
            self._seen[key] = (now, 0)
            return quiet


class InstanceRefused(Exception):
    """Raised by an `on_instance` callback that will not keep an instance: the sender gets `status` and
    `comment` (e.g. 0x0124 "Refused: Not authorized" for a C-STORE outside any retrieval)."""

    def __init__(self, status: int, comment: str, *, cut_off: bool = False):
        super().__init__(comment)
        self.status, self.comment, self.cut_off = status, comment, cut_off


class PeerCutOff(Exception):
    """Raised by the Storage SCP once a refusal that cut the peer off is answered: the association is aborted."""


def deliver(instance: ReceivedInstance, dataset, on_instance: Callable[[ReceivedInstance], int] | None
            ) -> tuple[int, str]:
    """Check one received instance and hand it to `on_instance`; whatever happens becomes a status word
    and a comment: malformed data 0xC000 before the callback runs, a failing disk 0xA700 (out of
    resources), any other error 0xC000. The server keeps serving."""
    try:
        instance.identity = files.check_dataset_bytes(dataset, instance.transfer_syntax_uid)
    except (InvalidDicomFile, ValueError) as exc:
        log.warning("refused a malformed instance from %s: %s", instance.calling_ae, exc)
        return 0xC000, f"Malformed dataset: {exc}"
    if on_instance is None:
        return 0xC000, "No receiver for instances on this association"
    try:
        status = on_instance(instance)
    except InstanceRefused as exc:
        instance.cut_off = exc.cut_off
        return exc.status, exc.comment
    except OSError as exc:
        log.error("cannot keep instance %s: %s", instance.sop_instance_uid, exc)
        return 0xA700, f"Cannot store: {exc.strerror or exc}"
    except Exception as exc:  # a receiver bug must cost one instance, not the association
        log.exception("receiver failed on instance %s", instance.sop_instance_uid)
        return 0xC000, f"Receiver error: {type(exc).__name__}"
    return (0x0000 if status is None else int(status)), ""
