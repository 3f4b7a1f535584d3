"""What the socket-level C-GET and C-MOVE requestors share: one retrieve request on an association of its
own, its pending and final responses (sub-operation counts, the Failed SOP Instance UID List), a C-CANCEL
when the deadline passes or the stop event is set, and the MoveResult and errors of apps.dicom.scu's
CGet and CMove."""
from __future__ import annotations

import logging
import threading
import time
from io import BytesIO

from pydicom.uid import UID
from pynetdicom.dsutils import decode, encode

from apps.dicom.connect import CANCEL_GRACE_SECONDS, text_value
from apps.dicom.errors import DicomTimeout, DimseFailure, RetrieveCanceled
from apps.dicom.outcomes import MoveResult
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.query import describe_query
from apps.dicom.status import category, describe
from apps.dicom.wire import commands, pdu
from apps.dicom.wire.requestor import RequestorAssociation

log = logging.getLogger(__name__)


class RetrieveAssociation(RequestorAssociation):
    """One C-GET or C-MOVE on presentation context 1, from connect to release. Subclasses negotiate (the
    retrieve model on context 1 first) and route the responses to `on_retrieve_response`."""

    command_field = 0  # C_GET_RQ or C_MOVE_RQ
    service = ""  # "get" or "move", for status words

    def __init__(self, peer: RemoteAE, local: LocalAE, sop_class: str, message_id: int):
        super().__init__(peer, local)
        self.sop_class, self.message_id = sop_class, message_id
        self.result = MoveResult(message_id=message_id)
        self.refused: list[str] = []  # instances we answered with a failure (C-GET only)
        self.final = False

    def request(self, identifier_bytes: bytes, **elements) -> None:
        self.send(1, True, commands.request(self.command_field, self.message_id, self.sop_class,
                                            has_dataset=True, priority=True, **elements))
        self.send(1, False, identifier_bytes)

    def run_until_final(self, deadline: float, stop: threading.Event | None = None) -> str:
        """Serve the peer's messages until the final response ("final"), `deadline` ("deadline") or `stop`
        ("stopped"). Both are looked at between PDUs only, never inside one."""
        return self.serve_until(lambda: self.final, deadline, f"C-{self.service.upper()}", stop=stop)

    def cancel(self) -> None:
        self.send(1, True, commands.cancel(self.message_id))

    def on_retrieve_response(self, cmd, context_id: int, parts) -> None:
        if commands.us(cmd, commands.RESPONDING_TO) != self.message_id:
            raise pdu.ProtocolError(f"a C-{self.service.upper()}-RSP to message "
                                    f"{commands.us(cmd, commands.RESPONDING_TO)}, not ours ({self.message_id})")
        status = commands.us(cmd, commands.STATUS)
        if status is None:
            raise pdu.ProtocolError(f"a C-{self.service.upper()}-RSP without a status")
        result = self.result
        result.status = status
        if category(status) != "Pending":
            result.remaining = 0  # a final response may leave the count out (PS3.7 C.4.2.1.6, C.4.3.1.6)
            self.final = True
        for attr, element in commands.SUB_OPERATION_COUNTS:
            value = commands.us(cmd, element)
            if value is not None:
                setattr(result, attr, value)
        if parts:
            ts = UID(self.contexts[context_id])
            identifier = decode(BytesIO(b"".join(parts)), ts.is_implicit_VR, ts.is_little_endian)
            failed = identifier.get("FailedSOPInstanceUIDList")
            if failed:
                result.failed_sop_instance_uids = [text_value(u) for u in ([failed] if isinstance(failed, str)
                                                                           else failed)]


def run_retrieve(assoc: RetrieveAssociation, ds, *, stop: threading.Event | None = None, hint: str = "",
                 **request_elements) -> MoveResult:
    """Connect, negotiate, send the request for identifier `ds`, and collect its responses. Beyond the
    peer's retrieve timeout, or once `stop` is set, the request is cancelled, the association aborted if
    the PACS keeps going, and DicomTimeout (or RetrieveCanceled) raised."""
    peer, name = assoc.peer, f"C-{assoc.service.upper()}"
    what = f"{name} of {describe_query(ds)}" + (f" to {request_elements['move_destination']}"
                                               if "move_destination" in request_elements else "")
    assoc.connect()
    try:
        with assoc.aborted_on_failure(what):
            assoc.negotiate()
            ts = UID(assoc.contexts[1])
            assoc.request(encode(ds, ts.is_implicit_VR, ts.is_little_endian), **request_elements)
            ended = assoc.run_until_final(time.monotonic() + peer.retrieve_timeout, stop)
            if ended != "final":
                assoc.cancel()
                if assoc.run_until_final(time.monotonic() + CANCEL_GRACE_SECONDS) != "final":
                    assoc.close(release=False)  # the PACS kept going: abort
            if ended == "stopped":
                raise RetrieveCanceled(f"The {what} from {peer.label} was cancelled on request "
                                       f"({assoc.result.completed} instances had arrived).")
            if ended == "deadline":
                raise DicomTimeout(f"The {what} from {peer.label} did not finish within {peer.retrieve_timeout:g} s "
                                   f"and was cancelled ({assoc.result.completed} instances had arrived). Raise the "
                                   "timeout for large studies, or check the PACS load.")
    except BaseException:
        assoc.close(release=assoc.final)
        raise
    assoc.close(release=True)
    result = assoc.result
    result.failed_sop_instance_uids = result.failed_sop_instance_uids or list(assoc.refused)
    attempted = result.completed + result.failed + result.warning
    # A failure after sub-operations ran (0xA702: every C-STORE failed) is a result to reconcile, with its
    # counts; without any, the request itself was refused.
    if category(result.status) in ("Failure", "Unknown") and not attempted:
        raise DimseFailure(f"{peer.label} answered the {what} with failure status "
                           f"{describe(result.status, assoc.service)}. {hint}".rstrip(), status=result.status)
    log.debug("%s on %s: %s", what, peer.label, result)
    return result
