"""What the catalog records of one DICOM file: patient, study, series and SOP identifiers, dates,
modality, descriptions, size and transfer syntax, read from the header (pixel data never read)."""
from __future__ import annotations

import os
import struct

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.errors import InvalidDicomError

from apps.dicom import flat
from apps.dicom.header import valid_uid
from apps.dicom.paths import NotRegularFile, open_regular, read_head

# catalog field -> (DICOM keyword, longest value kept)
FIELDS = {
    "patient_id": ("PatientID", 64), "patient_name": ("PatientName", 200), "patient_birth_date": ("PatientBirthDate", 8),
    "patient_sex": ("PatientSex", 16), "study_instance_uid": ("StudyInstanceUID", 64),
    "study_date": ("StudyDate", 8), "study_time": ("StudyTime", 16), "accession_number": ("AccessionNumber", 16),
    "study_id": ("StudyID", 16), "study_description": ("StudyDescription", 64),
    "referring_physician_name": ("ReferringPhysicianName", 200),
    "series_instance_uid": ("SeriesInstanceUID", 64), "series_number": ("SeriesNumber", 12),
    "series_description": ("SeriesDescription", 64), "modality": ("Modality", 16),
    "sop_instance_uid": ("SOPInstanceUID", 64), "sop_class_uid": ("SOPClassUID", 64),
    "instance_number": ("InstanceNumber", 12), "rows": ("Rows", 0), "columns": ("Columns", 0),
    "frames": ("NumberOfFrames", 0),
}
REQUIRED_UIDS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid")


class EntryError(Exception):
    """A file the catalog cannot hold, with the reason in words."""


def _text(value, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().replace("\x00", "")[:limit]


def entry_from_dataset(ds, size: int) -> dict:
    """The catalog's values of a dataset read without its pixel data; EntryError when a UID is missing."""
    entry = {}
    for name, (keyword, limit) in FIELDS.items():
        value = ds.get(keyword)
        if limit == 0:
            try:
                entry[name] = int(value or 0) if name != "frames" else max(int(value or 1), 1)
            except (TypeError, ValueError):
                entry[name] = 1 if name == "frames" else 0
        else:
            entry[name] = _text(value, limit)
    for name in REQUIRED_UIDS:
        if not valid_uid(entry[name]):
            raise EntryError(f"no valid {FIELDS[name][0]}")
    meta = getattr(ds, "file_meta", None)
    entry["transfer_syntax_uid"] = _text(meta.get("TransferSyntaxUID") if meta else "", 64)
    entry["size"] = size
    return entry


FIRST_BYTES = 4096  # the catalog's elements of most files (a CT's end within 2-3 kB): a 64 kB read cost 40 us more
HEAD_BYTES = 64 * 1024  # the catalog's elements come first; more is read only by pydicom's way
TAGS = {int(tag_for_keyword(keyword)): name for name, (keyword, _) in FIELDS.items()}  # tag -> catalog field
_LAST_TAG = max(TAGS)
_Slow = flat.Slow


def _quick(head: bytes, size: int) -> dict:
    """The catalog's values from the first bytes of a file flat.elements reads, when their text is ASCII
    (one struct unpack per element instead of a pydicom dataset; retrieval catalogues every instance it
    files)."""
    syntax, found = flat.elements(head, size, TAGS, _LAST_TAG)
    return entry_from_elements(head, syntax, found, size)


_READ = [(tag, name, FIELDS[name][1]) for tag, name in TAGS.items()]  # what entry_from_elements reads, in order
_UNSIGNED_SHORTS = ("rows", "columns")


def entry_from_elements(data: bytes, syntax: str, found: dict, size: int) -> dict:
    """The catalog's values from flat.elements' answer; _Slow when a text is not plain ASCII."""
    entry = {}
    for tag, name, limit in _READ:
        where = found.get(tag)
        value = data[where[1]:where[1] + where[2]] if where is not None else b""
        if limit:
            if not value.isascii():
                raise _Slow  # another character set: pydicom decodes it
            entry[name] = value.decode("ascii").replace("\x00", "").strip()[:limit]
        elif name in _UNSIGNED_SHORTS:
            entry[name] = struct.unpack_from("<H", value)[0] if len(value) == 2 else 0
        else:
            text = value.decode("ascii", "replace").strip(" \x00")
            number = int(text) if text.lstrip("-").isdigit() else 0
            entry[name] = max(number, 1) if name == "frames" else number
    for name in REQUIRED_UIDS:
        if not valid_uid(entry[name]):
            raise EntryError(f"no valid {FIELDS[name][0]}")
    entry["transfer_syntax_uid"], entry["size"] = syntax[:64], size
    return entry


def entry_of_chunks(chunks) -> dict | None:
    """The catalog's values of an instance still in memory (its file's bytes in pieces, as received), or
    None when the quick way cannot read them (then the file is read, read_entry); EntryError as read_entry.
    Costs a copy of the first HEAD_BYTES only, whatever the instance's size."""
    head, size = bytearray(), 0
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        size += len(view)
        if len(head) < HEAD_BYTES:
            head += view[:HEAD_BYTES - len(head)]
    try:
        return _quick(bytes(head), size)
    except (_Slow, struct.error, ValueError):
        return None


def read_entry(path: str | os.PathLike) -> dict:
    """The catalog's values of one file; EntryError for a file that is not a DICOM instance. Most files
    are read once, their first few kB; a longer header is read again, up to HEAD_BYTES, then by pydicom."""
    try:
        head, size = read_head(path, FIRST_BYTES)
        try:
            return _quick(head, size)
        except (_Slow, struct.error, ValueError):
            pass  # (a header beyond FIRST_BYTES, or not the quick way's kind of file)
        with open_regular(path) as fp:  # never blocks on a FIFO put where a file was
            size = os.fstat(fp.fileno()).st_size
            try:
                return _quick(fp.read(HEAD_BYTES), size)
            except (_Slow, struct.error, ValueError):
                fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=1024)
    except NotRegularFile as exc:
        raise EntryError(f"{exc.strerror}: not read") from None
    except InvalidDicomError:
        raise EntryError("not a DICOM file") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise EntryError(f"unreadable DICOM header: {str(exc).strip()[:200] or type(exc).__name__}") from None
    return entry_from_dataset(ds, size)
