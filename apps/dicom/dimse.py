"""C-ECHO and C-FIND over pynetdicom: echoing a server, and the browsing queries of the query API and
the `dicom` CLI, where one message per request makes pynetdicom's per-message cost irrelevant. The
retrieval and sending paths, where that cost is the throughput, are the socket-level SCUs (apps.dicom.scu).

`associate(...)` opens one association (a context manager) and the requests are methods on it, so a caller
can reuse one association for many queries (apps/dicom/reuse.py). The module-level functions open one
association each. Every failure becomes a typed DicomError (apps/dicom/errors.py) whose message names the
peer and says what to check. TCP_NODELAY is set on every socket (apps/dicom/connect.py).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import _config, build_context
from pynetdicom.sop_class import Verification

from apps.dicom import reuse
from apps.dicom.connect import MODELS, open_association, query_contexts, release_association, text_value
from apps.dicom.errors import AssociationAborted, DicomError, DicomTimeout, DimseFailure
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.query import identifier
from apps.dicom.status import category, describe

log = logging.getLogger(__name__)

# pynetdicom logs request/response identifiers (patient names and IDs) at INFO; ours stay at DEBUG.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


class Association:
    """One open association with a peer; see `associate`. `raw` is the pynetdicom Association."""

    def __init__(self, peer: RemoteAE, local: LocalAE):
        self.peer, self.local = peer, local
        self.raw = None
        self._message_id = 0
        self.busy = False  # a request is in flight: an exception now leaves the association unusable

    def release(self) -> None:
        """Release the association (pynetdicom's thread teardown finishes on its own, see connect.py)."""
        release_association(self.raw)

    def _next_id(self) -> int:
        self._message_id = self._message_id % 65535 + 1
        return self._message_id

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


@contextmanager
def associate(peer: RemoteAE, local: LocalAE, *, purpose: str) -> Iterator[Association]:
    """One association, released at the end (aborted if the block raises); inside
    reuse.reusing_associations(), the one the previous block left open with this peer and purpose.

    purpose "query": Verification + Patient/Study Root FIND.
    purpose "echo":  Verification only.
    """
    if purpose not in ("query", "echo"):
        raise ValueError(f"unknown association purpose {purpose!r}; use 'query' or 'echo'")

    def open_new() -> Association:
        wrapper = Association(peer, local)
        requested = query_contexts() if purpose == "query" else [build_context(Verification)]
        wrapper.raw = open_association(peer, local, requested)
        return wrapper

    yield from reuse.pooled_or_own((peer, local, purpose), open_new)


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

