"""Patient rewrite: give a DICOM file another PatientID and PatientName (the watched inbox takes them
from the folder name), encoded in UTF-8 (`SpecificCharacterSet` ISO_IR 192) so Korean, Chinese or
any other name survives. Every other text value is re-encoded from the file's own character set, so
nothing else changes meaning. The result is written next to nothing: the caller says where."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from apps.dicom import files, split
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.paths import open_regular

UTF8 = "ISO_IR 192"
DEFAULT_FOLDER_PATTERN = r"^#([0-9]+)-(.+)$"
MAX_PATIENT_ID = 64  # LO
MAX_NAME_GROUP = 64  # PN: each of the (up to three) component groups holds 64 characters


@dataclass(frozen=True)
class Patient:
    patient_id: str
    patient_name: str  # DICOM person name: components separated by "^"


def patient_from_folder(name: str, pattern=DEFAULT_FOLDER_PATTERN) -> Patient:
    """PatientID (group 1) and PatientName (group 2) from a folder name such as `#00042-홍^길동`.
    `pattern` is a regular expression's text or a compiled one (the inbox watcher's RE2 patterns).
    Raises ValueError saying what is wrong when the name does not fit."""
    match = pattern.fullmatch(name) if hasattr(pattern, "fullmatch") else re.fullmatch(pattern, name)
    if not match or len(match.groups()) < 2:
        raise ValueError(f"the folder name does not match the pattern {getattr(pattern, 'pattern', pattern)}")
    patient_id, patient_name = match.group(1).strip(), match.group(2).strip()
    if not patient_id or not patient_name:
        raise ValueError("the folder name gives an empty PatientID or PatientName")
    if len(patient_id) > MAX_PATIENT_ID or "\\" in patient_id:
        raise ValueError(f"the PatientID is not a valid DICOM LO value (at most {MAX_PATIENT_ID} characters, no '\\')")
    if "\\" in patient_name or any(len(group) > MAX_NAME_GROUP for group in patient_name.split("=")):
        raise ValueError(f"the PatientName is not a valid DICOM PN value (at most {MAX_NAME_GROUP} characters, no '\\')")
    return Patient(patient_id, patient_name)


def rewrite_patient(source: str | os.PathLike, target: str | os.PathLike, patient: Patient) -> str:
    """Write `source` to `target` with the patient's PatientID and PatientName, all text in UTF-8.
    Returns the file's SOPInstanceUID. Raises InvalidDicomFile naming the file when it is not complete
    DICOM or cannot be read. Of a file over files.LARGE_FILE_BYTES only the head (file meta and the elements
    before the pixel data) is read and rewritten; the pixel data and what follows it are copied from the
    source a megabyte at a time, so a 2 GB multi-frame instance costs its header (split.py; a deflated
    file, which cannot be read in parts, is read whole, as every smaller file is). The target is written to a temporary name and renamed, so it is never seen half-written."""
    name = os.fspath(source)
    target = Path(target)
    partial = target.with_name(target.name + ".partial")
    try:
        fp = open_regular(source)
    except OSError as exc:
        raise InvalidDicomFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    try:
        with fp:
            found = None
            if os.fstat(fp.fileno()).st_size > files.LARGE_FILE_BYTES:
                try:
                    found = split.split(fp, name)  # proven: pydicom would read a cut file without complaint
                except split.NotSplittable:
                    pass
            ds = _rewritten(found.head if found else files.read_checked(source)[1], patient, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as out:
                ds.save_as(out, enforce_file_format=True)
                if found is not None:
                    split.copy_range(fp.fileno(), len(found.head), found.info.size - len(found.head), out, name)
        os.replace(partial, target)
    except (ValueError, TypeError, OverflowError) as exc:
        partial.unlink(missing_ok=True)
        raise InvalidDicomFile(f"{name}: cannot be written after the patient rewrite ({exc})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return str(ds.SOPInstanceUID)


def rewrite_patient_bytes(data: bytes, patient: Patient, name: str = "<bytes>") -> bytes:
    """The same rewrite in memory, for a caller that must not write the result as it is (a research
    project's send de-identifies it next). `data` is a complete Part-10 file (files.read_checked)."""
    ds = _rewritten(data, patient, name)
    out = BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidDicomFile(f"{name}: cannot be written after the patient rewrite ({exc})") from None
    return out.getvalue()


def _rewritten(data: bytes, patient: Patient, name: str):
    try:
        ds = dcmread(BytesIO(data))
        ds.decode()  # every text value to str, from the file's own SpecificCharacterSet
    except (InvalidDicomError, OSError, EOFError, ValueError, LookupError) as exc:
        raise InvalidDicomFile(f"{name}: cannot be read for the patient rewrite ({exc})") from None
    ds.SpecificCharacterSet = UTF8
    ds.PatientID = patient.patient_id
    ds.PatientName = patient.patient_name
    return ds
