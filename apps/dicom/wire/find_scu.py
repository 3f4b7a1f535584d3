"""The C-FIND SCU of a retrieval row's own queries (its studies, their series or instances) before the
row's C-MOVE or C-GET (why on sockets: wire/__init__.py; on pynetdicom a row's association and C-FINDs
took about 14 ms before its first move, here 6–7). An association is a connect and two small PDUs, a
C-FIND one request and its responses read through a buffer.

The matches are pydicom Datasets; the contract and its errors: apps.dicom.scu.FindAssociation. An open
association can be lent by the reuse pool (apps.dicom.reuse) like dimse's: `raw` is itself, with
`is_established` and `abort()`."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from io import BytesIO
from typing import Iterator

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode

from apps.dicom import reuse
from apps.dicom.connect import MODELS
from apps.dicom.errors import DicomTimeout, DimseFailure
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.query import identifier_bytes
from apps.dicom.status import category, describe
from apps.dicom.syntaxes import UNCOMPRESSED
from apps.dicom.wire import commands, pdu
from apps.dicom.wire.requestor import RequestorAssociation

log = logging.getLogger(__name__)
FIND_PDU = 1024 * 1024  # the largest PDU we accept: an identifier is small, a PACS's PDU at most this


class FindAssociation(RequestorAssociation):
    """An association for C-FINDs (Study Root) on presentation context 1, one request at a time."""

    buffered = True

    def __init__(self, peer: RemoteAE, local: LocalAE):
        super().__init__(peer, local)
        self.max_pdu = min(self.max_pdu, FIND_PDU)
        self.sop_class = MODELS["study"][0]
        self.busy = False  # a request is in flight: an exception now leaves the association unusable
        self._message_id = 0
        self._request: _Request | None = None

    @property
    def raw(self) -> "FindAssociation":
        return self  # what the reuse pool looks at

    @property
    def is_established(self) -> bool:
        return self.established and not self.closed

    def open(self) -> "FindAssociation":
        self.connect()
        try:
            self.negotiate([(self.sop_class, UNCOMPRESSED)])
        except BaseException:
            self.close(release=False)
            raise
        if 1 not in self.contexts:
            self.close(release=True)
            raise DimseFailure(f"{self.peer.label} does not offer C-FIND ({UID(self.sop_class).name}) to us; "
                               "check the services enabled for our AE title on the PACS.")
        return self

    def release(self) -> None:
        self.close(release=True)

    def abort(self) -> None:
        self.close(release=False)

    def find(self, level: str, query: dict | Dataset, *, limit: int | None = None) -> list[Dataset]:
        """Matches of a C-FIND; keys with an empty value are the return keys asked for. With `limit`, at most
        limit + 1 matches come back and the PACS is asked to stop (C-CANCEL) once that one arrived. Each
        response must come within the peer's query timeout of the one before."""
        ts = UID(self.contexts[1])
        data = identifier_bytes(level, query, implicit_vr=ts.is_implicit_VR, little_endian=ts.is_little_endian)
        what, timeout = f"C-FIND at {level.upper()} level", self.peer.query_timeout
        self._message_id = self._message_id % 65535 + 1
        request = self._request = _Request(self._message_id, limit)
        self.busy = True
        with self.aborted_on_failure(what):
            # command and identifier in one write: two writes woke the PACS twice, and a worker lost its core
            # to the PACS's thread at the first (py-spy: 40 % of a worker's time in the first send)
            command = commands.request(commands.C_FIND_RQ, request.message_id, self.sop_class, has_dataset=True,
                                       priority=True)
            self.sock.sendall(pdu.p_data(1, True, command, self.peer_max_pdu) + pdu.p_data(
                1, False, data, self.peer_max_pdu))
            while request.status is None or category(request.status) == "Pending":
                seen = request.responses
                ended = self.serve_until(lambda: request.responses > seen, time.monotonic() + timeout, what)
                if ended != "final":
                    raise DicomTimeout(f"{self.peer.label} did not answer the {what} within {timeout:g} s. "
                                       "The PACS may be overloaded; try again or raise the timeout.")
                if request.cancel_now:
                    request.cancel_now = False
                    self.send(1, True, commands.cancel(request.message_id))
        self.busy = False
        if category(request.status) in ("Failure", "Unknown"):
            raise DimseFailure(f"{self.peer.label} answered the {what} with failure status "
                               f"{describe(request.status, 'find')}"
                               + (f"; it says: {request.comment}" if request.comment else "") + ".",
                               status=request.status)
        log.debug("C-FIND %s on %s: %d matches", level.upper(), self.peer.label, len(request.matches))
        return request.matches

    def on_message(self, cmd, context_id: int, parts, release=None) -> None:
        request = self._request
        field = commands.us(cmd, commands.COMMAND_FIELD)
        if field != commands.C_FIND_RSP or request is None:
            raise pdu.ProtocolError(f"unexpected DIMSE command 0x{field or 0:04X} during a C-FIND", pdu.UNEXPECTED_PDU)
        if commands.us(cmd, commands.RESPONDING_TO) != request.message_id:
            raise pdu.ProtocolError(f"a C-FIND-RSP to message {commands.us(cmd, commands.RESPONDING_TO)}, "
                                    f"not ours ({request.message_id})")
        status = commands.us(cmd, commands.STATUS)
        if status is None:
            raise pdu.ProtocolError("a C-FIND-RSP without a status")
        request.status, request.responses = status, request.responses + 1
        request.comment = commands.text(cmd.get(commands.ERROR_COMMENT))
        if category(status) == "Pending" and parts and (request.limit is None or len(request.matches) <= request.limit):
            ts = UID(self.contexts[context_id])
            request.matches.append(decode(BytesIO(b"".join(bytes(p) for p in parts)), ts.is_implicit_VR,
                                          ts.is_little_endian))
        if release is not None:
            release()
            if request.limit is not None and len(request.matches) > request.limit:
                request.cancel_now = True


class _Request:
    __slots__ = ("message_id", "limit", "matches", "status", "comment", "responses", "cancel_now")

    def __init__(self, message_id: int, limit: int | None):
        self.message_id, self.limit, self.matches = message_id, limit, []
        self.status, self.comment, self.responses, self.cancel_now = None, "", 0, False


@contextmanager
def find_association(peer: RemoteAE, local: LocalAE) -> Iterator[FindAssociation]:
    """An association for C-FINDs, released at the end (aborted if the block raises); inside
    reuse.reusing_associations(), the one the previous block left open with this peer, when fresh."""
    yield from reuse.pooled_or_own((peer, local, "find"), lambda: FindAssociation(peer, local).open())
