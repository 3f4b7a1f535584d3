"""Where retrieved studies land (the batch download tool's layout, docs/contracts.md): DOWNLOADS_DIR/<SERVER>/<YYYYMMDD>_<PatientID>_<Modality>/
<SOPInstanceUID>.dcm. IDs are made filesystem-safe; an ID that had to change gets a short hash of its
original spelling, so 'A/B' and 'A_B' never share a folder."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def safe_component(value: str, *, empty: str = "NONE") -> str:
    value = (value or "").strip()
    if not value:
        return empty
    cleaned = _UNSAFE.sub("_", value).strip(".") or "_"
    if cleaned != value:
        cleaned = f"{cleaned}~{hashlib.sha1(value.encode()).hexdigest()[:6]}"
    return cleaned[:80]


def study_folder(root: Path, server: str, study_date: str, patient_id: str, modality: str) -> Path:
    name = f"{safe_component(study_date, empty='NODATE')}_{safe_component(patient_id)}_{safe_component(modality, empty='ALL')}"
    return Path(root) / safe_component(server) / name


class FilingFailed(Exception):
    """Filing a study failed: `reason` (the OS error), and the files that stayed in the study folder
    although the rest was taken back (`stayed`: only when removing them failed too)."""

    def __init__(self, reason: str, stayed: list[str]):
        super().__init__(reason)
        self.reason, self.stayed = reason, stayed

    def what_stayed(self) -> str:
        if not self.stayed:
            return "nothing of it was kept"
        names = ", ".join(self.stayed[:5]) + (f" and {len(self.stayed) - 5} more" if len(self.stayed) > 5 else "")
        return f"{len(self.stayed)} files of it could not be taken back and stayed in the folder ({names})"


@dataclass
class Filed:
    """What one file_into placed: the bytes, and the files as they are named in the folder now."""

    bytes: int = 0
    paths: list[Path] = field(default_factory=list)


def file_into(folder: Path, staged: list[Path]) -> Filed:
    """Move staged instances into the study folder as they arrived (a rename on one filesystem, never a
    re-encode). Returns the bytes and the files it placed, so a caller can take them back. An instance already there (an earlier run of the row) is replaced,
    so a re-run never duplicates. All or nothing: when one fails (a full disk, say), the files this call
    put there are removed again, and FilingFailed names any that could not be."""
    placed: list[Path] = []  # new names only: what a failure removes again
    filed, made = Filed(), not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path in staged:
            target = folder / path.name
            new = made or not os.path.lexists(target)  # a folder made here holds none of them yet
            filed.bytes += os.stat(path).st_size
            try:
                os.replace(path, target)  # staging and downloads share a disk: one system call
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                try:
                    shutil.move(path, target)  # on another disk: a copy, then the staged file goes
                except BaseException:
                    if new:
                        placed.append(target)  # a part of it may be there
                    raise
            if new:
                placed.append(target)
            filed.paths.append(target)
    except OSError as exc:
        stayed = []
        for target in placed:
            try:
                target.unlink(missing_ok=True)
            except OSError:
                stayed.append(target.name)
        if made and not stayed:
            try:
                folder.rmdir()
            except OSError:
                pass
        raise FilingFailed(exc.strerror or str(exc), stayed) from exc
    return filed
