"""The catalog's entry of a file read the quick way (flat.elements' answer), without pydicom: what the
catalog records (FIELDS) and the rules every reader of it keeps. catalog_entry.py reads files with it, and
with pydicom those it does not take; an import's decoders read the common image's entry with it alone
(flat_image.py), so they start without pydicom."""
from __future__ import annotations

import struct

from apps.dicom import flat
from apps.dicom.header import valid_uid

# catalog field -> (DICOM keyword, its tag, longest value kept); the tags written out rather than looked up in
# pydicom's dictionary (tests/catalog/test_entry.py checks them against it)
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
TAGS = {tag: name for name, (_, tag, _) in FIELDS.items()}  # tag -> catalog field
_READ = [(tag, name, limit) for name, (_, tag, limit) in FIELDS.items()]  # what entry_from_elements reads, in order
_UNSIGNED_SHORTS = ("rows", "columns")


class EntryError(Exception):
    """A file the catalog cannot hold, with the reason in words."""


def entry_from_elements(data: bytes, syntax: str, found: dict, size: int) -> dict:
    """The catalog's values from flat.elements' answer; flat.Slow when a text is not plain ASCII."""
    entry = {}
    for tag, name, limit in _READ:
        where = found.get(tag)
        value = data[where[1]:where[1] + where[2]] if where is not None else b""
        if limit:
            if not value.isascii():
                raise flat.Slow  # another character set: pydicom decodes it
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
