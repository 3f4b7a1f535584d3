"""A C-GET SCU written directly on sockets: the C-GET fast path.

With C-GET the PACS sends its C-STOREs back on our own association and waits for each C-STORE
response, so the Python we spend per instance is the retrieval's throughput. pynetdicom spends ~3 ms
(PDU objects, its reactor's 1 ms sleep, a pydicom Dataset per message); this SCU reads PDUs into
buffers, keeps dataset fragments as views of them, and answers each C-STORE as the Storage SCP does
(wire/messages.py), on the requestor's side of the upper layer (wire/pdu.py).

The result, the statuses and the errors are those of apps.dicom.dimse.Association.get.
"""
from __future__ import annotations

import logging
import threading
import time
from io import BytesIO
from typing import Callable

from pydicom.uid import UID
from pynetdicom.dsutils import decode, encode

from apps.dicom.connect import CANCEL_GRACE_SECONDS, MODELS, text_value
from apps.dicom.dimse import MoveResult, describe_query, identifier
from apps.dicom.errors import AssociationAborted, DicomTimeout, DimseFailure, RetrieveCanceled
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.scp import ReceivedInstance
from apps.dicom.status import category, describe
from apps.dicom.syntaxes import COMMON_STORAGE_SOP_CLASSES, MAX_CONTEXTS, TRANSFER_SYNTAXES, UNCOMPRESSED
from apps.dicom.wire import commands, pdu
from apps.dicom.wire.messages import answer_c_store
from apps.dicom.wire.requestor import RequestorAssociation

log = logging.getLogger(__name__)

# Context 1 is the GET model; the storage classes we take the SCP role for fill the rest.
STORAGE_SOP_CLASSES = COMMON_STORAGE_SOP_CLASSES[:MAX_CONTEXTS - 1]


class _GetAssociation(RequestorAssociation):
    """One C-GET on its own association, from connect to release."""

    def __init__(self, peer: RemoteAE, local: LocalAE, on_instance, message_id: int):
        super().__init__(peer, local)
        self.on_instance, self.message_id = on_instance, message_id
        self.sop_class = MODELS["study"][2]
        self.result = MoveResult(message_id=message_id)
        self.refused: list[str] = []  # instances we answered with a failure
        self.final = False

    def negotiate(self) -> None:
        contexts = [(self.sop_class, UNCOMPRESSED)] + [(uid, TRANSFER_SYNTAXES) for uid in STORAGE_SOP_CLASSES]
        super().negotiate(contexts, scp_role_for=STORAGE_SOP_CLASSES)
        if 1 not in self.contexts:
            raise DimseFailure(f"{self.peer.label} does not offer C-GET ({UID(self.sop_class).name}) to us; "
                               "check the services enabled for our AE title on the PACS.")

    # -- the C-GET ---------------------------------------------------------------------------------------

    def request(self, identifier_bytes: bytes) -> None:
        self.send(1, True, commands.request(commands.C_GET_RQ, self.message_id, self.sop_class,
                                            has_dataset=True, priority=True))
        self.send(1, False, identifier_bytes)

    def run_until_final(self, deadline: float, stop: threading.Event | None = None) -> str:
        """Serve the C-STOREs and collect the C-GET responses until the final one ("final"), `deadline`
        ("deadline") or `stop` ("stopped"). Both are looked at between PDUs only, never inside one."""
        return self.serve_until(lambda: self.final, deadline, "C-GET", stop=stop)

    def cancel(self) -> None:
        self.send(1, True, commands.cancel(self.message_id))

    def on_message(self, cmd, context_id: int, parts) -> None:
        field = commands.us(cmd, commands.COMMAND_FIELD)
        if field == commands.C_STORE_RQ:
            rsp, status = answer_c_store(cmd, parts, sop_class="", transfer_syntax=self.contexts[context_id],
                                         sender_ae=self.peer.ae_title, on_instance=self.on_instance)
            if category(status) == "Failure":
                self.refused.append(commands.text(cmd.get(commands.AFFECTED_SOP_INSTANCE)))
            self.send(context_id, True, rsp)
        elif field == commands.C_GET_RSP:
            self._get_response(cmd, context_id, parts)
        else:
            raise pdu.ProtocolError(f"unexpected DIMSE command 0x{field or 0:04X} during the C-GET", pdu.UNEXPECTED_PDU)

    def _get_response(self, cmd, context_id: int, parts) -> None:
        status = commands.us(cmd, commands.STATUS)
        if status is None:
            raise pdu.ProtocolError("a C-GET-RSP without a status")
        result = self.result
        result.status = status
        if category(status) != "Pending":
            result.remaining = 0  # a final response may leave the count out (PS3.7 C.4.3.1.6)
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


def c_get(peer: RemoteAE, local: LocalAE, query: dict, on_instance: Callable[[ReceivedInstance], int], *,
          level: str = "STUDY", message_id: int = 1, stop: threading.Event | None = None) -> MoveResult:
    """C-GET (Study Root) on an association of its own: each instance goes to `on_instance` (which
    returns a status word; raising makes that instance fail). The same MoveResult and errors as
    apps.dicom.dimse.Association.get; beyond `peer.retrieve_timeout`, or once `stop` is set, the C-GET is
    cancelled, the association aborted if the PACS keeps going, and DicomTimeout (or RetrieveCanceled)
    raised."""
    ds = identifier(level, query)
    what = f"C-GET of {describe_query(ds)}"
    get = _GetAssociation(peer, local, on_instance, message_id)
    get.connect()
    try:
        get.negotiate()
        ts = UID(get.contexts[1])
        get.request(encode(ds, ts.is_implicit_VR, ts.is_little_endian))
        ended = get.run_until_final(time.monotonic() + peer.retrieve_timeout, stop)
        if ended != "final":
            get.cancel()
            if get.run_until_final(time.monotonic() + CANCEL_GRACE_SECONDS) != "final":
                get.close(release=False)  # the PACS kept going: abort
        if ended == "stopped":
            raise RetrieveCanceled(f"The {what} from {peer.label} was cancelled on request "
                                   f"({get.result.completed} instances had arrived).")
        if ended == "deadline":
            raise DicomTimeout(f"The {what} from {peer.label} did not finish within {peer.retrieve_timeout:g} s "
                               f"and was cancelled ({get.result.completed} instances had arrived). Raise the "
                               "timeout for large studies, or check the PACS load.")
    except pdu.ProtocolError as exc:
        log.warning("aborting the C-GET association with %s: %s", peer.label, exc)
        get.close(release=False)
        raise AssociationAborted(f"{peer.label} broke the DICOM protocol during the {what} ({exc}).") from None
    except (pdu.PeerClosed, OSError) as exc:  # reset, broken pipe, a send that timed out
        get.close(release=False)
        raise AssociationAborted(f"{peer.label} dropped the association during the {what} ({exc}). "
                                 "Check the PACS log; try again.") from None
    except BaseException:
        get.close(release=get.final)
        raise
    get.close(release=True)
    result = get.result
    result.failed_sop_instance_uids = result.failed_sop_instance_uids or list(get.refused)
    attempted = result.completed + result.failed + result.warning
    if category(result.status) in ("Failure", "Unknown") and not attempted:
        raise DimseFailure(f"{peer.label} answered the {what} with failure status {describe(result.status, 'get')}.",
                           status=result.status)
    log.debug("%s on %s: %s", what, peer.label, result)
    return result
