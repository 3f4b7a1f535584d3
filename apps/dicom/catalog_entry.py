"""What the catalog records of one DICOM file: patient, study, series and SOP identifiers, dates,
modality, descriptions, size and transfer syntax, read from the header (pixel data never read): the quick
way (flat.py) here, without pydicom; a file it does not take, pydicom's way (dataset_entry.py)."""
from __future__ import annotations

import os
import struct

from apps.dicom import flat
from apps.dicom.header import valid_uid
from apps.dicom.paths import NotRegularFile, open_regular, read_head

# catalog field -> (DICOM keyword, its tag, longest value kept); the tags written out, not looked up in pydicom's
# dictionary, so the quick way imports no pydicom (tests/catalog/test_entry.py checks them against it)
FIELDS = {
    "patient_id": ("PatientID", 0x00100020, 64), "patient_name": ("PatientName", 0x00100010, 200),
    "patient_birth_date": ("PatientBirthDate", 0x00100030, 8), "patient_sex": ("PatientSex", 0x00100040, 16),
    "study_instance_uid": ("StudyInstanceUID", 0x0020000D, 64), "study_date": ("StudyDate", 0x00080020, 8),
    "study_time": ("StudyTime", 0x00080030, 16), "accession_number": ("AccessionNumber", 0x00080050, 16),
    "study_id": ("StudyID", 0x00200010, 16), "study_description": ("StudyDescription", 0x00081030, 64),
    "referring_physician_name": ("ReferringPhysicianName", 0x00080090, 200),
    "series_instance_uid": ("SeriesInstanceUID", 0x0020000E, 64), "series_number": ("SeriesNumber", 0x00200011, 12),
    "series_description": ("SeriesDescription", 0x0008103E, 64), "modality": ("Modality", 0x00080060, 16),
    "sop_instance_uid": ("SOPInstanceUID", 0x00080018, 64), "sop_class_uid": ("SOPClassUID", 0x00080016, 64),
    "instance_number": ("InstanceNumber", 0x00200013, 12), "rows": ("Rows", 0x00280010, 0),
    "columns": ("Columns", 0x00280011, 0), "frames": ("NumberOfFrames", 0x00280008, 0),
}
REQUIRED_UIDS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid")


class EntryError(Exception):
    """A file the catalog cannot hold, with the reason in words."""


FIRST_BYTES = 4096  # the catalog's elements of most files (a CT's end within 2-3 kB): a 64 kB read cost 40 us more
HEAD_BYTES = 64 * 1024  # the catalog's elements come first; more is read only by pydicom's way
TAGS = {tag: name for name, (_, tag, _) in FIELDS.items()}  # tag -> catalog field
_LAST_TAG = max(TAGS)
_Slow = flat.Slow


def _quick(head: bytes, size: int) -> dict:
    """The catalog's values from the first bytes of a file flat.elements reads, when their text is ASCII
    (one struct unpack per element instead of a pydicom dataset; retrieval catalogues every instance it
    files)."""
    syntax, found = flat.elements(head, size, TAGS, _LAST_TAG)
    return entry_from_elements(head, syntax, found, size)


_READ = [(tag, name, FIELDS[name][2]) for tag, name in TAGS.items()]  # what entry_from_elements reads, in order
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
            # pydicom's way, imported at the first file that needs it: the quick way (and an import's decoder
            # processes, which read the common image's entry with it) never pays pydicom's import
            from apps.dicom import dataset_entry
            ds = dataset_entry.read_dataset(fp)
    except NotRegularFile as exc:
        raise EntryError(f"{exc.strerror}: not read") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise EntryError(f"unreadable DICOM header: {str(exc).strip()[:200] or type(exc).__name__}") from None
    return dataset_entry.entry_from_dataset(ds, size)
