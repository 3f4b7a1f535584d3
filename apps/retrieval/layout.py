"""Where retrieved studies land (the batch download tool's layout, docs/contracts.md): DOWNLOADS_DIR/<SERVER>/<YYYYMMDD>_<PatientID>_<Modality>/
<SOPInstanceUID>.dcm. IDs are made filesystem-safe; an ID that had to change gets a short hash of its
original spelling, so 'A/B' and 'A_B' never share a folder."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
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


def file_into(folder: Path, staged: list[Path]) -> int:
    """Move staged instances into the study folder as they arrived (a rename on one filesystem, never a
    re-encode). Returns the bytes filed. An instance already there is replaced, so a re-run never duplicates."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in staged:
        total += os.stat(path).st_size
        try:
            os.replace(path, folder / path.name)  # staging and downloads share a disk: one system call
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(path, folder / path.name)  # on another disk: a copy, then the staged file goes
    return total
