"""What the catalog records of one DICOM file: patient, study, series and SOP identifiers, dates,
modality, descriptions, size and transfer syntax, read from the header (pixel data never read): the quick
way (flat.py, flat_entry.py) first, pydicom's for the files it does not take."""
from __future__ import annotations

import os
import struct

import pydicom
from pydicom.errors import InvalidDicomError

from apps.dicom import flat
from apps.dicom.flat_entry import FIELDS, REQUIRED_UIDS, TAGS, EntryError, entry_from_elements
from apps.dicom.header import valid_uid
from apps.dicom.paths import NotRegularFile, open_regular, read_head


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


FIRST_BYTES = 4096  # the catalog's elements of most files (a CT's end within 2-3 kB): a 64 kB read cost 40 us more
HEAD_BYTES = 64 * 1024  # the catalog's elements come first; more is read only by pydicom's way
_LAST_TAG = max(TAGS)
_Slow = flat.Slow


def _quick(head: bytes, size: int) -> dict:
    """The catalog's values from the first bytes of a file flat.elements reads, when their text is ASCII
    (one struct unpack per element instead of a pydicom dataset; retrieval catalogues every instance it
    files)."""
    syntax, found = flat.elements(head, size, TAGS, _LAST_TAG)
    return entry_from_elements(head, syntax, found, size)


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
