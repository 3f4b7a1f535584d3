"""DIMSE command sets (PS3.7 section 6.3 and 9.3, annex E) as plain bytes: one decoder, one encoder, and
builders for the requests and responses the wire engines send. Command sets are always Implicit VR
Little Endian; elements are written in tag order with the group length first."""
from __future__ import annotations

import struct

from apps.dicom.wire.pdu import ProtocolError

# Command Field values (PS3.7 E.1)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_CANCEL_RQ = 0x0FFF
# Command Data Set Type
HAS_DATASET, NO_DATASET = 0x0000, 0x0101
# Elements of group 0000 (the element number only)
AFFECTED_SOP_CLASS, COMMAND_FIELD, MESSAGE_ID, RESPONDING_TO, PRIORITY = 0x0002, 0x0100, 0x0110, 0x0120, 0x0700
MOVE_DESTINATION = 0x0600
DATASET_TYPE, STATUS, ERROR_COMMENT, AFFECTED_SOP_INSTANCE = 0x0800, 0x0900, 0x0902, 0x1000
REMAINING, COMPLETED, FAILED, WARNING = 0x1020, 0x1021, 0x1022, 0x1023
MOVE_ORIGINATOR_AE, MOVE_ORIGINATOR_ID = 0x1030, 0x1031
SUB_OPERATION_COUNTS = (("remaining", REMAINING), ("completed", COMPLETED), ("failed", FAILED),
                        ("warning", WARNING))
PRIORITY_MEDIUM = 0x0000


def decode(data: bytes) -> dict[int, bytes]:
    """Element number -> value of a command set. Elements of other groups are skipped: Orthanc's C-GET-RSP
    after a failed sub-operation carries (0008,0058) Failed SOP Instance UID List inside the command set."""
    elements, pos = {}, 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise ProtocolError("a command set ends inside an element header")
        group, element, length = struct.unpack_from("<HHL", data, pos)
        if pos + 8 + length > len(data):
            raise ProtocolError(f"command set element ({group:04X},{element:04X}) runs past its end")
        if group == 0:
            elements[element] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return elements


def us(elements: dict[int, bytes], element: int) -> int | None:
    """An unsigned short element, or None when absent or malformed."""
    value = elements.get(element)
    return struct.unpack("<H", value)[0] if value is not None and len(value) == 2 else None


def text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace").strip(" \x00")


def _padded(raw: bytes, pad: bytes) -> bytes:
    return raw + pad if len(raw) % 2 else raw


def encode(elements: dict[int, int | str | bytes]) -> bytes:
    """A command set from element number -> value: ints are US, strs are UIDs (padded with NUL) unless the
    element is an AE title or the Error Comment (padded with a space), bytes go as they are."""
    parts = []
    for element in sorted(elements):
        value = elements[element]
        if isinstance(value, int):
            raw = struct.pack("<H", value)
        elif isinstance(value, str):
            spaced = element in (ERROR_COMMENT, MOVE_ORIGINATOR_AE, MOVE_DESTINATION)
            raw = _padded(value.encode("ascii", "replace"), b" " if spaced else b"\0")
        else:
            raw = value
        parts.append(struct.pack("<HHL", 0, element, len(raw)) + raw)
    body = b"".join(parts)
    return struct.pack("<HHL", 0, 0x0000, 4) + struct.pack("<L", len(body)) + body


def request(command_field: int, message_id: int, sop_class: str, *, has_dataset: bool = False,
            priority: bool = False, move_destination: str = "") -> bytes:
    """A request command set (C-GET-RQ, C-MOVE-RQ to `move_destination`, C-STORE-RQ...)."""
    elements = {AFFECTED_SOP_CLASS: sop_class, COMMAND_FIELD: command_field, MESSAGE_ID: message_id,
                DATASET_TYPE: HAS_DATASET if has_dataset else NO_DATASET}
    if move_destination:
        elements[MOVE_DESTINATION] = move_destination
    if priority:
        elements[PRIORITY] = PRIORITY_MEDIUM
    return encode(elements)


def cancel(responding_to: int) -> bytes:
    """C-CANCEL-RQ for the request with message ID `responding_to`."""
    return encode({COMMAND_FIELD: C_CANCEL_RQ, RESPONDING_TO: responding_to, DATASET_TYPE: NO_DATASET})


def response(command_field: int, message_id: int, sop_class: str, status: int, sop_instance: str = "",
             comment: str = "") -> bytes:
    """A response without a dataset (C-STORE-RSP, C-ECHO-RSP, a refusal)."""
    elements = {AFFECTED_SOP_CLASS: sop_class, COMMAND_FIELD: command_field, RESPONDING_TO: message_id,
                DATASET_TYPE: NO_DATASET, STATUS: status}
    if comment:
        elements[ERROR_COMMENT] = comment[:64]
    if sop_instance:
        elements[AFFECTED_SOP_INSTANCE] = sop_instance
    return encode(elements)
