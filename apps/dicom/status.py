"""DIMSE status words in words: what happened and what to check, for messages a technologist reads."""
from __future__ import annotations

from pynetdicom import status as _status

SERVICE_TABLES = {
    "store": _status.STORAGE_SERVICE_CLASS_STATUS,
    "find": _status.QR_FIND_SERVICE_CLASS_STATUS,
    "move": _status.QR_MOVE_SERVICE_CLASS_STATUS,
    "get": _status.QR_GET_SERVICE_CLASS_STATUS,
    "echo": _status.VERIFICATION_SERVICE_CLASS_STATUS,
}

# What to check, for the failures met in practice (PS3.4 Annex B and C, PS3.7 Annex C).
HINTS = {
    0x0122: "the PACS does not accept this kind of object (SOP class)",
    0x0124: "the PACS does not allow our AE title to do this; ask its administrator",
    0x0110: "the PACS failed while processing the request; see its log",
    0x0211: "the PACS does not support this operation",
    0xA801: "the destination AE title is not declared on the PACS; add it there as a DICOM node "
            "(AE title, host, port) and try again",
    0xA900: "the data does not match what the PACS expects for this SOP class",
    0xC000: "the PACS could not process the request; its log says why",
}
RANGE_HINTS = (
    (0xA700, 0xA7FF, "the PACS is out of resources (disk full or overloaded); try again later"),
    (0xC000, 0xCFFF, "the PACS could not understand or process it; its log says why"),
)


def category(status: int | None) -> str:
    """'Success', 'Warning', 'Failure', 'Cancel', 'Pending' or 'Unknown'."""
    if status is None:
        return "Unknown"
    return _status.code_to_category(status)


def describe(status: int, service: str) -> str:
    """E.g. '0xA801 (Move destination unknown: the destination AE title is not declared on ...)'."""
    table = SERVICE_TABLES.get(service, {})
    _, meaning = table.get(status) or _status.GENERAL_STATUS.get(status) or (None, "")
    hint = HINTS.get(status)
    if hint is None:
        hint = next((text for low, high, text in RANGE_HINTS if low <= status <= high), "")
    words = ": ".join(part for part in (meaning, hint) if part) or "status not defined by the standard"
    return f"0x{status:04X} ({words})"
