"""The C-MOVE requestor (why on sockets: wire/__init__.py). The PACS sends a pending response after every
sub-operation; they only say how far it got, so they are read in batches through a buffer, a few struct
unpacks each, and leave the CPU to the PACS and our receiver, which do the moving. The contract and its
errors: apps.dicom.scu.CMove.
"""
from __future__ import annotations

import threading

from pydicom.uid import UID

from apps.dicom.connect import MODELS
from apps.dicom.errors import DimseFailure
from apps.dicom.outcomes import MoveResult
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.query import identifier
from apps.dicom.syntaxes import UNCOMPRESSED
from apps.dicom.wire import commands, pdu
from apps.dicom.wire.retrieve_scu import RetrieveAssociation, run_retrieve

MOVE_PDU = 64 * 1024  # the largest PDU we accept: responses and identifiers are small
BATCH_PER_REMAINING, BATCH_MAX = 0.0002, 0.010  # seconds waited between batches of pending responses


class _MoveAssociation(RetrieveAssociation):
    command_field, service = commands.C_MOVE_RQ, "move"
    buffered = True

    def batch_delay(self) -> float:
        """Pending responses are read in batches, not on a wake-up each, so that the worker's CPU goes to
        the PACS and the receiver (bench/README.md, bench/retrieve.py). A batch waits 0.2 ms for each
        sub-operation still to come, at most 10 ms, so the final response is seen later only from a PACS
        sending more than 5,000 instances a second, and then by at most 10 ms."""
        return min(BATCH_MAX, max(1, self.result.remaining) * BATCH_PER_REMAINING)

    def __init__(self, peer: RemoteAE, local: LocalAE, message_id: int):
        super().__init__(peer, local, MODELS["study"][1], message_id)
        self.max_pdu = min(self.max_pdu, MOVE_PDU)

    def negotiate(self) -> None:
        super().negotiate([(self.sop_class, UNCOMPRESSED)])
        if 1 not in self.contexts:
            raise DimseFailure(f"{self.peer.label} does not offer C-MOVE ({UID(self.sop_class).name}) to us; "
                               "check the services enabled for our AE title on the PACS.")

    def on_message(self, cmd, context_id: int, parts, release=None) -> None:
        field = commands.us(cmd, commands.COMMAND_FIELD)
        if field != commands.C_MOVE_RSP:
            raise pdu.ProtocolError(f"unexpected DIMSE command 0x{field or 0:04X} during the C-MOVE", pdu.UNEXPECTED_PDU)
        self.on_retrieve_response(cmd, context_id, parts)


def c_move(peer: RemoteAE, local: LocalAE, query: dict, destination_ae: str, *, level: str = "STUDY",
           message_id: int = 1, stop: threading.Event | None = None) -> MoveResult:
    """C-MOVE (Study Root) to `destination_ae` on an association of its own. The PACS tags its C-STOREs
    with our AE title and `message_id` (Move Originator), so the receiver can tell this move's instances
    from any other's. Beyond `peer.retrieve_timeout`, or once `stop` is set, the C-MOVE is cancelled, the
    association aborted if the PACS keeps going, and DicomTimeout (or RetrieveCanceled) raised."""
    return run_retrieve(_MoveAssociation(peer, local, message_id), identifier(level, query), stop=stop,
                        move_destination=destination_ae,
                        hint=f"Check that {destination_ae} is declared on the PACS as a DICOM node (AE title, "
                             "host, port) allowed to receive.")
