"""DIMSE messages over PDVs: reassembling a message from its fragments (PS3.8 annex E.2), and the one way a
wire engine answers a C-STORE-RQ (the Storage SCP for a C-MOVE, the C-GET SCU for its sub-operations)."""
from __future__ import annotations

from typing import Callable

from apps.dicom import files
from apps.dicom.scp import ReceivedInstance, deliver
from apps.dicom.wire import commands
from apps.dicom.wire.pdu import UNEXPECTED_PDU, ProtocolError, pdvs


class MessageAssembler:
    """Reassembles DIMSE messages from PDVs: the command set, then the dataset fragments, all on one
    presentation context. Subclasses hold `contexts` (the accepted ids) and implement
    `on_message(command, context_id, dataset_parts)`; dataset parts are views into their PDU buffers,
    so nothing is copied until the file is built."""

    contexts: dict

    def reset_message(self) -> None:
        self.context_id = None
        self.command_parts: list[bytes] = []
        self.command: dict[int, bytes] | None = None
        self.dataset_parts: list = []

    def on_p_data(self, body: bytearray) -> None:
        """Every PDV of one P-DATA-TF PDU, in order."""
        for context_id, is_command, is_last, data in pdvs(body):
            self.on_fragment(context_id, is_command, is_last, data)

    def on_fragment(self, context_id: int, is_command: bool, is_last: bool, data: memoryview) -> None:
        if context_id not in self.contexts:
            raise ProtocolError(f"a PDV on presentation context {context_id}, which was not accepted")
        if self.context_id is None:
            self.context_id = context_id
        elif context_id != self.context_id:
            raise ProtocolError("a message changed presentation context midway")
        if is_command:
            if self.command is not None:
                raise ProtocolError("a command fragment where the dataset was expected", UNEXPECTED_PDU)
            self.command_parts.append(bytes(data))
            if is_last:
                self.command = commands.decode(b"".join(self.command_parts))
                if commands.us(self.command, commands.DATASET_TYPE) == commands.NO_DATASET:
                    self._complete()
        else:
            if self.command is None or commands.us(self.command, commands.DATASET_TYPE) == commands.NO_DATASET:
                raise ProtocolError("a dataset fragment without a command announcing it", UNEXPECTED_PDU)
            self.dataset_parts.append(data)
            if is_last:
                self._complete()

    def _complete(self) -> None:
        command, context_id, parts = self.command, self.context_id, self.dataset_parts
        self.reset_message()
        self.on_message(command, context_id, parts)

    def on_message(self, command: dict[int, bytes], context_id: int, parts: list) -> None:
        raise NotImplementedError


def answer_c_store(command: dict[int, bytes], parts: list, *, sop_class: str, transfer_syntax: str,
                   sender_ae: str, on_instance: Callable[[ReceivedInstance], int] | None) -> tuple[bytes, int]:
    """Build the received instance (our file meta + the dataset bytes as they arrived), hand it to
    `on_instance` through the shared checks of `deliver`, and return (the C-STORE-RSP command set, status)."""
    message_id = commands.us(command, commands.MESSAGE_ID)
    if message_id is None:
        raise ProtocolError("a C-STORE-RQ without a message ID")
    sop_class = commands.text(command.get(commands.AFFECTED_SOP_CLASS)) or sop_class
    sop_instance = commands.text(command.get(commands.AFFECTED_SOP_INSTANCE))
    header = files.part10_bytes(sop_class, sop_instance, transfer_syntax, b"", sender_ae)
    data = b"".join([header, *parts])
    instance = ReceivedInstance(
        sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=transfer_syntax,
        data=data, calling_ae=sender_ae,
        move_originator_ae=commands.text(command.get(commands.MOVE_ORIGINATOR_AE)) or None,
        move_originator_message_id=commands.us(command, commands.MOVE_ORIGINATOR_ID))
    status, comment = deliver(instance, memoryview(data)[len(header):], on_instance)
    return commands.response(commands.C_STORE_RSP, message_id, sop_class, status, sop_instance, comment), status
