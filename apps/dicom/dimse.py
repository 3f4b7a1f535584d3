"""DIMSE client: C-ECHO, C-FIND, C-MOVE, C-GET and C-STORE over pynetdicom, one association at a time.

`associate(...)` opens one association (a context manager) and everything else is a method on it,
so a job can reuse one association for many queries and retrievals. The module-level functions
open one association each. Every failure becomes a typed DicomError (apps/dicom/errors.py) whose
message names the peer and says what to check.

Speed (docs/architecture.md, "The wire layer"): TCP_NODELAY on every socket, the largest PDU the peer accepts, files
sent as their bytes (no decode/re-encode), received instances handed over as the bytes that arrived.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Callable, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import _config, build_context, evt
from pynetdicom.sop_class import Verification

from apps.dicom import files, reuse
from apps.dicom.connect import (
    MODELS,
    Watchdog,
    get_contexts,
    open_association,
    query_contexts,
    release_association,
    store_contexts,
    text_value,
)
from apps.dicom.errors import (
    AssociationAborted,
    DicomError,
    DicomTimeout,
    DimseFailure,
    InvalidDicomFile,
    RetrieveCanceled,
)
from apps.dicom.outcomes import MoveResult, StoreOutcome, not_accepted, store_words
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.query import describe_query, identifier
from apps.dicom.scp import ReceivedInstance, answer_store
from apps.dicom.status import category, describe

log = logging.getLogger(__name__)

# A file path given to send_c_store is streamed as its encoded bytes, never decoded. This needs an
# accepted context with exactly the file's transfer syntax, which is what this module proposes.
_config.STORE_SEND_CHUNKED_DATASET = True
# pynetdicom logs request/response identifiers (patient names and IDs) at INFO; ours stay at DEBUG.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

class Association:
    """One open association with a peer; see `associate`. `raw` is the pynetdicom Association."""

    def __init__(self, peer: RemoteAE, local: LocalAE, on_instance=None):
        self.peer, self.local = peer, local
        self.raw = None
        self._on_instance = on_instance
        self._refused: list[str] = []  # instances of the running C-GET that we answered with a failure
        self._message_id = 0
        self.busy = False  # a request is in flight: an exception now leaves the association unusable

    def release(self) -> None:
        """Release the association (pynetdicom's thread teardown finishes on its own, see connect.py)."""
        release_association(self.raw)

    def _next_id(self) -> int:
        self._message_id = self._message_id % 65535 + 1
        return self._message_id

    def _handle_store(self, event):
        status = answer_store(event, self._on_instance)
        if category(int(status.Status if isinstance(status, Dataset) else status)) == "Failure":
            self._refused.append(text_value(event.request.AffectedSOPInstanceUID))
        return status

    def _timeout(self, seconds: float) -> None:
        self.raw.dimse_timeout = seconds

    def _require(self, sop_class: str, service: str) -> None:
        if not any(cx.abstract_syntax == sop_class for cx in self.raw.accepted_contexts):
            raise DimseFailure(f"{self.peer.label} does not offer {service} ({UID(sop_class).name}) to us; "
                               "check the services enabled for our AE title on the PACS.")

    def _lost(self, what: str, waited: float, timeout: float) -> DicomError:
        if waited >= timeout * 0.95:
            return DicomTimeout(f"{self.peer.label} did not answer the {what} within {timeout:g} s. "
                                "The PACS may be overloaded; try again or raise the timeout.")
        return AssociationAborted(f"{self.peer.label} dropped the association during the {what}. "
                                  "Check the PACS log; try again.")

    def _status(self, rsp: Dataset | None, what: str, service: str, since: float, timeout: float) -> int:
        """The status word of a response; raises when the response is missing or a failure."""
        if rsp is None or "Status" not in rsp:
            raise self._lost(what, time.monotonic() - since, timeout)
        code = int(rsp.Status)
        if category(code) in ("Failure", "Unknown"):
            comment = text_value(rsp.get("ErrorComment", ""))
            raise DimseFailure(f"{self.peer.label} answered the {what} with failure status {describe(code, service)}"
                               + (f"; it says: {comment}" if comment else "") + ".", status=code)
        return code

    def echo(self) -> float:
        """C-ECHO round trip in milliseconds."""
        self._require(Verification, "C-ECHO")
        self._timeout(self.peer.query_timeout)
        started, self.busy = time.monotonic(), True
        rsp = self.raw.send_c_echo(msg_id=self._next_id())
        self._status(rsp, "C-ECHO", "echo", started, self.peer.query_timeout)
        self.busy = False
        return (time.monotonic() - started) * 1000

    def find(self, level: str, query: dict | Dataset, *, model: str = "study", limit: int | None = None
             ) -> list[Dataset]:
        """Matches of a C-FIND; keys with an empty value are the return keys asked for. With `limit`, at most
        limit + 1 matches come back (the one more says there are more) and the PACS is asked to stop
        (C-CANCEL) as soon as that one arrives, so an unbounded query never fills memory."""
        ds = identifier(level, query)
        sop_class = MODELS[model][0]
        self._require(sop_class, "C-FIND")
        timeout = self.peer.query_timeout
        self._timeout(timeout)
        matches, last, message_id = [], time.monotonic(), self._next_id()
        self.busy = True
        for rsp, match in self.raw.send_c_find(ds, sop_class, msg_id=message_id):
            code = self._status(rsp, f"C-FIND at {ds.QueryRetrieveLevel} level", "find", last, timeout)
            last = time.monotonic()
            if category(code) == "Pending" and match is not None and (limit is None or len(matches) <= limit):
                matches.append(match)
                if limit is not None and len(matches) > limit:
                    self.raw.send_c_cancel(message_id, query_model=sop_class)
        self.busy = False
        log.debug("C-FIND %s on %s: %d matches", ds.QueryRetrieveLevel, self.peer.label, len(matches))
        return matches

    def move(self, query: dict | Dataset, destination_ae: str, *, level: str = "STUDY", message_id: int = 1,
             model: str = "study", stop: threading.Event | None = None) -> MoveResult:
        """C-MOVE to `destination_ae`. The PACS tags its C-STOREs with our AE title and `message_id`
        (Move Originator), so the receiver can tell this move's instances from any other's. Setting `stop`
        cancels it (RetrieveCanceled)."""
        ds = identifier(level, query)
        sop_class = MODELS[model][1]
        self._require(sop_class, "C-MOVE")
        responses = self.raw.send_c_move(ds, destination_ae, sop_class, msg_id=message_id)
        return self._retrieve(f"C-MOVE of {describe_query(ds)} to {destination_ae}", "move", responses, message_id,
                              sop_class, stop=stop, hint=f"Check that {destination_ae} is declared on the PACS as a DICOM "
                                              "node (AE title, host, port) allowed to receive.")

    def get(self, query: dict | Dataset, on_instance: Callable[[ReceivedInstance], int], *, level: str = "STUDY",
            message_id: int = 1, model: str = "study", stop: threading.Event | None = None) -> MoveResult:
        """C-GET: the instances come back on this association, each handed to `on_instance` (which
        returns a status word; raising makes that instance fail). Setting `stop` cancels it."""
        ds = identifier(level, query)
        sop_class = MODELS[model][2]
        self._require(sop_class, "C-GET")
        previous, self._on_instance, self._refused = self._on_instance, on_instance, []
        try:
            responses = self.raw.send_c_get(ds, sop_class, msg_id=message_id)
            result = self._retrieve(f"C-GET of {describe_query(ds)}", "get", responses, message_id, sop_class, stop=stop)
            # PACSs often leave out the Failed SOP Instance UID List; for C-GET we know it ourselves.
            result.failed_sop_instance_uids = result.failed_sop_instance_uids or list(self._refused)
            return result
        finally:
            self._on_instance = previous

    def _retrieve(self, what: str, service: str, responses: Iterator, message_id: int, sop_class: str, *,
                  hint: str = "", stop: threading.Event | None = None) -> MoveResult:
        timeout = self.peer.retrieve_timeout
        self._timeout(timeout)
        result = MoveResult(message_id=message_id)
        last, self.busy = time.monotonic(), True
        with Watchdog(self.raw, message_id, sop_class, timeout, stop) as watchdog:
            for rsp, answer in responses:
                if watchdog.ended:
                    break
                if rsp is None or "Status" not in rsp:
                    if watchdog.stopped:
                        break
                    raise self._lost(what, time.monotonic() - last, timeout)
                last = time.monotonic()
                result.status = int(rsp.Status)
                if category(result.status) != "Pending":
                    result.remaining = 0  # a final response may leave the count out (PS3.7 C.4.2.1.6)
                for attr, keyword in (("completed", "NumberOfCompletedSuboperations"),
                                      ("failed", "NumberOfFailedSuboperations"),
                                      ("warning", "NumberOfWarningSuboperations"),
                                      ("remaining", "NumberOfRemainingSuboperations")):
                    if rsp.get(keyword) is not None:
                        setattr(result, attr, int(rsp.get(keyword)))
                if answer is not None and "FailedSOPInstanceUIDList" in answer:
                    failed = answer.FailedSOPInstanceUIDList
                    result.failed_sop_instance_uids = [text_value(u) for u in ([failed] if isinstance(failed, str) else failed)]
        if watchdog.stopped:
            raise RetrieveCanceled(f"The {what} from {self.peer.label} was cancelled on request "
                                   f"({result.completed} instances had arrived).")
        if watchdog.fired:
            raise DicomTimeout(f"The {what} from {self.peer.label} did not finish within {timeout:g} s and was "
                               f"cancelled ({result.completed} instances had arrived). Raise the timeout for large "
                               "studies, or check the PACS load.")
        attempted = result.completed + result.failed + result.warning
        # A failure status after sub-operations ran (e.g. 0xA702 when every C-STORE failed) is a result
        # to reconcile, with its counts and failed UIDs; without any, the request itself was refused.
        if category(result.status) in ("Failure", "Unknown") and not attempted:
            raise DimseFailure(f"{self.peer.label} answered the {what} with failure status "
                               f"{describe(result.status, service)}. {hint}".rstrip(), status=result.status)
        self.busy = False
        log.debug("%s on %s: %s", what, self.peer.label, result)
        return result

    def store(self, item: str | Path | Dataset | bytes) -> StoreOutcome:
        """C-STORE one instance: a file (sent as its bytes), a Dataset, or Part-10 bytes. A failure
        status is an outcome (ok=False); a file that is not complete DICOM raises InvalidDicomFile."""
        if isinstance(item, Dataset):
            ts = getattr(getattr(item, "file_meta", None), "TransferSyntaxUID", None)
            if not ts or "SOPClassUID" not in item or "SOPInstanceUID" not in item:
                raise InvalidDicomFile("a dataset to store needs SOPClassUID, SOPInstanceUID and "
                                       "file_meta.TransferSyntaxUID (how it is encoded)")
            info = files.DicomFileInfo("<dataset>", text_value(item.SOPClassUID), text_value(item.SOPInstanceUID),
                                       str(ts), 0, 0)
            return self._send(None, item, info, exact=False)
        info = files.inspect(item)
        if isinstance(item, (bytes, bytearray, memoryview)):
            return self._send(None, dcmread(BytesIO(bytes(item))), info, exact=False)
        return self._send(str(item), Path(item), info, exact=True)

    def store_file(self, path: str | Path, info: files.DicomFileInfo) -> StoreOutcome:
        """C-STORE a file whose header files.read_meta read (`info`): proven complete, then sent as its bytes."""
        files.read_complete(path, info)
        return self._send(str(path), Path(path), info, exact=True)

    def _send(self, path: str | None, payload, info: files.DicomFileInfo, *, exact: bool) -> StoreOutcome:
        def outcome(status, message):
            return StoreOutcome.of(path, info.sop_instance_uid, status, message)

        if not self._can_send(info, exact):
            return outcome(None, not_accepted(self.peer, info))
        timeout = self.peer.retrieve_timeout
        self._timeout(timeout)
        started = time.monotonic()
        try:
            rsp = self.raw.send_c_store(payload, msg_id=self._next_id())
        except (ValueError, AttributeError) as exc:  # pynetdicom could not encode or frame it
            return outcome(None, f"cannot be sent: {exc}")
        if rsp is None or "Status" not in rsp:
            raise self._lost("C-STORE", time.monotonic() - started, timeout)
        code = int(rsp.Status)
        return outcome(code, store_words(code, text_value(rsp.get("ErrorComment", ""))))

    def _can_send(self, info: files.DicomFileInfo, exact: bool) -> bool:
        for cx in self.raw.accepted_contexts:
            if cx.abstract_syntax != info.sop_class_uid or not cx.as_scu:
                continue
            # a Dataset may be re-encoded by pynetdicom between uncompressed syntaxes; file bytes may not
            if cx.transfer_syntax[0] == info.transfer_syntax_uid or (
                    not exact and not UID(info.transfer_syntax_uid).is_compressed
                    and not cx.transfer_syntax[0].is_compressed):
                return True
        return False


@contextmanager
def associate(peer: RemoteAE, local: LocalAE, *, purpose: str, contexts=None,
              on_instance: Callable[[ReceivedInstance], int] | None = None) -> Iterator[Association]:
    """One association, released at the end (aborted if the block raises).

    purpose "query": Verification + Patient/Study Root FIND, MOVE and GET (contexts must be None).
    purpose "store": `contexts` = (SOP class UID, transfer syntax UID) pairs or PresentationContexts.
    purpose "get":   Study/Patient Root FIND + GET, and the SCP role for storage SOP classes: `contexts`
                     = the SOP class UIDs to receive (default: pynetdicom's 120 common storage classes).
    purpose "echo":  Verification only.
    """
    if purpose not in ("query", "echo", "store", "get") or (purpose in ("query", "echo") and contexts is not None):
        raise ValueError(f"unknown association purpose {purpose!r} (or contexts given where none are taken)")

    def open_new() -> Association:
        wrapper = Association(peer, local, on_instance)
        ext_neg, handlers = None, []
        if purpose == "query":
            requested = query_contexts()
        elif purpose == "echo":
            requested = [build_context(Verification)]
        elif purpose == "store":
            requested = store_contexts(contexts or [])
        else:
            requested, ext_neg = get_contexts(contexts)
            handlers = [(evt.EVT_C_STORE, wrapper._handle_store)]
        wrapper.raw = open_association(peer, local, requested, ext_neg=ext_neg, handlers=handlers)
        return wrapper

    yield from reuse.pooled_or_own((peer, local, purpose) if purpose in ("query", "echo") else None, open_new)


def echo(peer: RemoteAE, local: LocalAE) -> float:
    """C-ECHO in its own association; milliseconds from association request to the echo's answer."""
    started = time.monotonic()
    with associate(peer, local, purpose="echo") as assoc:
        assoc.echo()
        return (time.monotonic() - started) * 1000


def find(peer: RemoteAE, local: LocalAE, level: str, query: dict | Dataset, model: str = "study",
         limit: int | None = None) -> list[Dataset]:
    with associate(peer, local, purpose="query") as assoc:
        return assoc.find(level, query, model=model, limit=limit)


def move(peer: RemoteAE, local: LocalAE, query: dict | Dataset, destination_ae: str, *, level: str = "STUDY",
         message_id: int = 1, model: str = "study", stop: threading.Event | None = None) -> MoveResult:
    with associate(peer, local, purpose="query") as assoc:
        return assoc.move(query, destination_ae, level=level, message_id=message_id, model=model, stop=stop)


def get(peer: RemoteAE, local: LocalAE, query: dict | Dataset, on_instance: Callable[[ReceivedInstance], int], *,
        level: str = "STUDY", message_id: int = 1, model: str = "study", stop: threading.Event | None = None
        ) -> MoveResult:
    with associate(peer, local, purpose="get") as assoc:
        return assoc.get(query, on_instance, level=level, message_id=message_id, model=model, stop=stop)
