"""The receiving side: a Storage SCP (plus Verification) that hands every instance, as the bytes that
arrived, to a callback. The portal's receiver (`manage.py receive`) and C-GET both use it.

A callback that raises costs one instance a failure status (0xA700 for a disk problem, 0xC000 for
anything else), never the server; malformed data is refused with 0xC000 before the callback runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import Verification

from apps.dicom import files
from apps.dicom.connect import application_entity, set_nodelay, text_value
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.peers import LocalAE
from apps.dicom.service import Service
from apps.dicom.syntaxes import ALL_STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES

log = logging.getLogger(__name__)


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
    # Called once the chunks are written and nothing reads them again: their buffer may then hold a later
    # instance (wire/messages.py). Only whoever wrote the instance calls it, and then never reads it.
    release: Callable[[], None] | None = field(default=None, repr=False, compare=False)
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


class InstanceRefused(Exception):
    """Raised by an `on_instance` callback that will not keep an instance: the sender gets `status` and
    `comment` (e.g. 0x0124 "Refused: Not authorized" for a C-STORE outside any retrieval)."""

    def __init__(self, status: int, comment: str):
        super().__init__(comment)
        self.status, self.comment = status, comment


def received_instance(event) -> ReceivedInstance:
    """The instance of a C-STORE request, as the bytes that arrived (also used for C-GET)."""
    req = event.request
    sender = event.assoc.acceptor if event.assoc.is_requestor else event.assoc.requestor
    sop_class, sop_instance = text_value(req.AffectedSOPClassUID), text_value(req.AffectedSOPInstanceUID)
    transfer_syntax, calling_ae = str(event.context.transfer_syntax), text_value(sender.ae_title)
    message_id = req.MoveOriginatorMessageID
    return ReceivedInstance(
        sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=transfer_syntax,
        chunks=(files.part10_bytes(sop_class, sop_instance, transfer_syntax, req.DataSet.getvalue(), calling_ae),),
        calling_ae=calling_ae, move_originator_ae=text_value(req.MoveOriginatorApplicationEntityTitle) or None,
        move_originator_message_id=int(message_id) if message_id is not None else None)


def _failure(status: int, comment: str) -> Dataset:
    rsp = Dataset()
    rsp.Status = status
    rsp.ErrorComment = comment[:64]  # LO
    return rsp


def deliver(instance: ReceivedInstance, dataset, on_instance: Callable[[ReceivedInstance], int] | None
            ) -> tuple[int, str]:
    """Check one received instance and hand it to `on_instance`; whatever happens becomes a status word
    and a comment: malformed data 0xC000 before the callback runs, a failing disk 0xA700 (out of
    resources), any other error 0xC000. Shared by both Storage SCPs; the server keeps serving."""
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
        return exc.status, exc.comment
    except OSError as exc:
        log.error("cannot keep instance %s: %s", instance.sop_instance_uid, exc)
        return 0xA700, f"Cannot store: {exc.strerror or exc}"
    except Exception as exc:  # a receiver bug must cost one instance, not the association
        log.exception("receiver failed on instance %s", instance.sop_instance_uid)
        return 0xC000, f"Receiver error: {type(exc).__name__}"
    return (0x0000 if status is None else int(status)), ""


def answer_store(event, on_instance: Callable[[ReceivedInstance], int] | None):
    """pynetdicom's EVT_C_STORE handler: the instance as received, through `deliver`. pynetdicom sends
    the response once this returns, so what was left for after the answer is done before it."""
    try:
        instance = received_instance(event)
    except (AttributeError, TypeError, ValueError) as exc:
        log.warning("refused a malformed instance from %s: %s", event.assoc.requestor.ae_title, exc)
        return _failure(0xC000, f"Malformed dataset: {exc}")
    try:
        status, comment = deliver(instance, event.request.DataSet.getbuffer(), on_instance)
    finally:
        instance.answered()
    return _failure(status, comment) if comment else status


class StorageSCP(Service):
    """A Storage SCP on `bind_host`:`local.port` (0 = any free port; `.port` tells which) answering
    to `local.ae_title`. Each association runs in its own thread; `on_instance` must be thread-safe.
    A peer that `accepts_calling_ae` does not know gets "not authorized" for every C-STORE."""

    def __init__(self, local: LocalAE, on_instance: Callable[[ReceivedInstance], int], *,
                 bind_host: str = "127.0.0.1", accepts_calling_ae: Callable[[str], bool] | None = None,
                 limits: ReceiverLimits = ReceiverLimits()):
        self.local, self.bind_host, self.limits = local, bind_host, limits
        self._on_instance = on_instance
        self._accepts_calling_ae = accepts_calling_ae
        self._server = None

    def start(self) -> "StorageSCP":
        ae = application_entity(self.local.ae_title)
        ae.require_called_aet = True  # a PACS that calls us by another name is misconfigured: say so
        ae.maximum_pdu_size = 0  # let senders use PDUs as large as they like
        ae.maximum_associations = self.limits.max_associations  # beyond: A-ASSOCIATE-RJ, local limit exceeded
        ae.network_timeout = self.limits.idle_timeout  # a sender silent this long is gone
        ae.acse_timeout = self.limits.pdu_timeout
        for sop_class in ALL_STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            (self.bind_host, self.local.port), block=False,
            evt_handlers=[(evt.EVT_CONN_OPEN, set_nodelay), (evt.EVT_C_STORE, self._handle_store)])
        log.debug("Storage SCP %s listening on %s:%s", self.local.ae_title, self.bind_host, self.port)
        return self

    def _handle_store(self, event):
        calling_ae = text_value(event.assoc.requestor.ae_title)
        if self._accepts_calling_ae is not None and not self._accepts_calling_ae(calling_ae):
            return _failure(0x0124, f"Refused: calling AE title {calling_ae} is not a configured peer")
        return answer_store(event, self._on_instance)

