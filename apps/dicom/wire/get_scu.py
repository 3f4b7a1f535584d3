"""The C-GET SCU (why on sockets: wire/__init__.py). The PACS sends its C-STOREs back on our own association;
each is answered as the Storage SCP answers one (wire/messages.py), on the requestor's side of the upper
layer (wire/requestor.py). The contract and its errors: apps.dicom.scu.CGet.
"""
from __future__ import annotations

import threading
from typing import Callable

from pydicom.uid import UID

from apps.dicom.connect import MODELS
from apps.dicom.errors import DimseFailure
from apps.dicom.outcomes import MoveResult
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.query import identifier
from apps.dicom.status import category
from apps.dicom.syntaxes import COMMON_STORAGE_SOP_CLASSES, MAX_CONTEXTS, TRANSFER_SYNTAXES, UNCOMPRESSED
from apps.dicom.wire import commands, pdu, streamed
from apps.dicom.wire.messages import answer_c_store
from apps.dicom.wire.received import ReceivedInstance
from apps.dicom.wire.retrieve_scu import RetrieveAssociation, run_retrieve

# Context 1 is the GET model; the storage classes we take the SCP role for fill the rest.
STORAGE_SOP_CLASSES = COMMON_STORAGE_SOP_CLASSES[:MAX_CONTEXTS - 1]


class _GetAssociation(RetrieveAssociation):
    """One C-GET on its own association: the C-STOREs come back on it and are answered here."""

    command_field, service = commands.C_GET_RQ, "get"

    def __init__(self, peer: RemoteAE, local: LocalAE, on_instance, message_id: int):
        super().__init__(peer, local, MODELS["study"][2], message_id)
        self.on_instance = on_instance

    def negotiate(self) -> None:
        contexts = [(self.sop_class, UNCOMPRESSED)] + [(uid, TRANSFER_SYNTAXES) for uid in STORAGE_SOP_CLASSES]
        super().negotiate(contexts, scp_role_for=STORAGE_SOP_CLASSES)
        if 1 not in self.contexts:
            raise DimseFailure(f"{self.peer.label} does not offer C-GET ({UID(self.sop_class).name}) to us; "
                               "check the services enabled for our AE title on the PACS.")

    def begin_stream(self, command, context_id: int, head):
        return streamed.start(command, head, sop_class="", transfer_syntax=self.contexts[context_id],
                              sender_ae=self.peer.ae_title, on_instance=self.on_instance,
                              send=lambda rsp: self.send(context_id, True, rsp))

    def on_streamed(self, stream) -> None:
        if category(stream.finish()) == "Failure":
            self.refused.append(stream.instance.sop_instance_uid)

    def on_message(self, cmd, context_id: int, parts, release=None) -> None:
        field = commands.us(cmd, commands.COMMAND_FIELD)
        if field == commands.C_STORE_RQ:
            status = answer_c_store(cmd, parts, sop_class="", transfer_syntax=self.contexts[context_id],
                                    sender_ae=self.peer.ae_title, on_instance=self.on_instance, release=release,
                                    send=lambda rsp: self.send(context_id, True, rsp))
            if category(status) == "Failure":
                self.refused.append(commands.text(cmd.get(commands.AFFECTED_SOP_INSTANCE)))
        elif field == commands.C_GET_RSP:
            self.on_retrieve_response(cmd, context_id, parts)
        else:
            raise pdu.ProtocolError(f"unexpected DIMSE command 0x{field or 0:04X} during the C-GET", pdu.UNEXPECTED_PDU)


def c_get(peer: RemoteAE, local: LocalAE, query: dict, on_instance: Callable[[ReceivedInstance], int], *,
          level: str = "STUDY", message_id: int = 1, stop: threading.Event | None = None) -> MoveResult:
    """C-GET (Study Root) on an association of its own: each instance goes to `on_instance` (which
    returns a status word; raising makes that instance fail). Beyond `peer.retrieve_timeout`, or once `stop`
    is set, the C-GET is cancelled, the association aborted if the PACS keeps going, and DicomTimeout (or
    RetrieveCanceled) raised (apps.dicom.scu)."""
    return run_retrieve(_GetAssociation(peer, local, on_instance, message_id), identifier(level, query), stop=stop)
