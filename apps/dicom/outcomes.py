"""What a retrieve or a store came back with (the socket-level SCUs in wire/, STOW-RS through store.py): the
sub-operation counts of a C-MOVE/C-GET, and one stored instance's outcome in words."""
from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.uid import UID

from apps.dicom import files
from apps.dicom.peers import RemoteAE
from apps.dicom.status import category, describe


@dataclass
class MoveResult:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    status: int | None = None  # the last status word received
    failed_sop_instance_uids: list[str] = field(default_factory=list)
    message_id: int = 1


@dataclass
class StoreOutcome:
    path: str | None  # None for a dataset or bytes given in memory
    sop_instance_uid: str
    status: int | None  # None when nothing was sent (e.g. no accepted presentation context)
    ok: bool  # the PACS stored it (success or warning)
    warning: bool
    message: str

    @classmethod
    def of(cls, path: str | None, sop_instance_uid: str, status: int | None, message: str) -> "StoreOutcome":
        kind = category(status)
        return cls(path, sop_instance_uid, status, kind in ("Success", "Warning"), kind == "Warning", message)


def store_words(status: int, comment: str = "") -> str:
    """A C-STORE response status in words: "stored", or the status, its meaning and the PACS's comment."""
    return "stored" if status == 0 else describe(status, "store") + (f"; it says: {comment}" if comment else "")


def not_accepted(peer: RemoteAE, info: files.DicomFileInfo) -> str:
    return (f"{peer.label} does not accept {UID(info.sop_class_uid).name} encoded as "
            f"{UID(info.transfer_syntax_uid).name}")
