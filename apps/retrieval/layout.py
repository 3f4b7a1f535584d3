"""Where retrieved studies land (the batch download tool's layout, docs/contracts.md): DOWNLOADS_DIR/<SERVER>/<YYYYMMDD>_<PatientID>_<Modality>/
<SOPInstanceUID>.dcm. IDs are made filesystem-safe; an ID that had to change gets a short hash of its
original spelling, so 'A/B' and 'A_B' never share a folder."""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

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


def file_into(folder: Path, staged: list[Path], movable: Iterable[Path] = ()) -> Filed:
    """Move staged instances into the study folder as they arrived (a rename on one filesystem, never a
    re-encode). Returns the bytes and the files it placed, so a caller can take them back. An instance
    already there (an earlier run of the row) is replaced, so a re-run never duplicates. All or nothing:
    when one fails (a full disk, say), the files this call put there are removed again, and FilingFailed
    names any that could not be. `movable`: folders of the caller's alone that nobody writes into any more
    (a study's hold, a finished C-GET's staging folder); a new study folder is made of the first one that
    holds nothing but instances of `staged`, by one rename (see _take_whole)."""
    placed: list[Path] = []  # new names only: what a failure removes again
    filed, made = Filed(), not folder.exists()
    try:
        whole = _take_whole(folder, staged, movable) if made else None
        if whole is not None:  # its instances are in place: the others follow one by one
            source, filed.bytes = whole
            filed.paths = [folder / path.name for path in staged if path.parent == source]
            placed = list(filed.paths)
            staged = [path for path in staged if path.parent != source]
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


def _take_whole(folder: Path, staged: list[Path], movable: Iterable[Path]) -> tuple[Path, int] | None:
    """Make the new study `folder` of one of the `movable` folders that holds nothing but regular files
    among `staged`, by renaming that folder: one system call where filing file by file took one per
    instance (500 instances: ~30 ms, at the end of a study's retrieval, where nothing else runs). Returns
    (the folder renamed, the bytes of its files), or None when none qualifies or the rename cannot be made
    (then the instances are filed one by one). The rename never replaces anything: a study folder another
    row made meanwhile makes it fail (renameat2's RENAME_NOREPLACE), as does a file system without it or
    another disk."""
    names: dict[Path, set[str]] = {}
    for path in staged:
        names.setdefault(path.parent, set()).add(path.name)
    for source in movable:
        ours, found, size = names.get(source), set(), 0
        if not ours:
            continue
        try:
            with os.scandir(source) as entries:
                for entry in entries:
                    if not entry.is_file(follow_symlinks=False):
                        break
                    found.add(entry.name)
                    size += entry.stat(follow_symlinks=False).st_size
                else:  # (every entry a regular file)
                    if found == ours:
                        folder.parent.mkdir(parents=True, exist_ok=True)
                        return (source, size) if rename_new(source, folder) else None
        except OSError:
            continue
    return None


_AT_FDCWD, _RENAME_NOREPLACE = -100, 1
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def rename_new(source: Path, target: Path) -> bool:
    """Rename `source` to `target` unless `target` exists (atomically: renameat2 with RENAME_NOREPLACE,
    Linux 3.15 and glibc 2.28 on). False when it exists or the system cannot make such a rename."""
    if _renameat2 is None:
        return False
    return _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0
