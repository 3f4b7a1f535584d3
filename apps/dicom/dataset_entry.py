"""catalog_entry.py's values of a file the quick way does not take (another character set, a big-endian or
deflated file, a header beyond HEAD_BYTES...), from the dataset pydicom reads. catalog_entry.read_entry
imports it at the first such file."""
from __future__ import annotations

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from apps.dicom.catalog_entry import FIELDS, REQUIRED_UIDS, EntryError
from apps.dicom.header import valid_uid


def read_dataset(fp) -> Dataset:
    """The header of an open file (pixel data not read, values over 1 kB read when used); EntryError when it
    is not DICOM."""
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, defer_size=1024)
    except InvalidDicomError:
        raise EntryError("not a DICOM file") from None


def _text(value, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().replace("\x00", "")[:limit]


def entry_from_dataset(ds, size: int) -> dict:
    """The catalog's values of a dataset read without its pixel data; EntryError when a UID is missing."""
    entry = {}
    for name, (keyword, _, limit) in FIELDS.items():
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
