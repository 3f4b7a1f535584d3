"""Where the receiver puts what a C-MOVE sends us, keyed by the move that asked for it.

A PACS answering our C-MOVE opens its own association to our receiver and C-STOREs each instance
with the Move Originator AE title and Message ID of our request (PS3.7 C.4.2.1.4). Keying the staging
folder by that pair, not by StudyInstanceUID, keeps two moves of one study (two jobs, a retry) apart.

Layout: <root>/<originator AE>/<message id>/<SOPInstanceUID>.dcm ; instances that arrive without
move originator fields (a plain C-STORE) go to <root>/_unsolicited/<calling AE>/.
Files are written to a temporary name then renamed, so a reader never sees half an instance.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from apps.dicom.errors import InvalidDicomFile

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
AE_SAFE_RE = re.compile(r"[^A-Za-z0-9_-]")


def safe_uid(uid: str) -> str:
    """A UID is digits and dots (PS3.5 9.1); anything else could walk out of the folder."""
    uid = (uid or "").strip().rstrip("\x00")
    if not UID_RE.match(uid) or len(uid) > 64:
        raise InvalidDicomFile(f"'{uid[:80]}' is not a valid DICOM UID")
    return uid


def safe_ae(ae_title: str) -> str:
    return AE_SAFE_RE.sub("_", (ae_title or "").strip()) or "_"


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def write_atomically(target: Path, data) -> None:
    """Temporary file then rename: no reader (a count, a C-FIND, a C-MOVE) ever sees half an instance.

    This runs once per received instance while the PACS waits for our answer, so it is plain system
    calls: the temporary name is unique per process and thread (one thread writes one file at a time),
    the folder is created only when the first open finds it missing, and the bytes go to the file
    unbuffered. Files are private to the portal's user (0600), as tempfile.mkstemp made them."""
    tmp = target.parent / f".incoming-{os.getpid()}-{threading.get_ident()}-{target.name}.part"
    try:
        fd = os.open(tmp, _CREATE, 0o600)
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, _CREATE, 0o600)
    try:
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class MoveStaging:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, originator_ae: str | None, message_id: int | None, calling_ae: str = "") -> Path:
        if originator_ae and message_id is not None:
            return self.root / safe_ae(originator_ae) / str(int(message_id))
        return self.root / "_unsolicited" / safe_ae(calling_ae)

    def write(self, folder: Path, sop_instance_uid: str, data: bytes) -> Path:
        """Store the bytes exactly as received. Re-sending an instance overwrites it (idempotent)."""
        target = folder / f"{safe_uid(sop_instance_uid)}.dcm"
        write_atomically(target, data)
        return target

    @staticmethod
    def instances(folder: Path) -> list[Path]:
        """The complete instances in a staging folder (not the ones still being written)."""
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == ".dcm" and not p.name.startswith("."))
