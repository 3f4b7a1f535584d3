"""header.py's ImageHeader from a dataset pydicom reads: the files the quick reader (flat_image.py) leaves,
or from the file with large values skipped by seeking past them (a few kilobytes of reading, not a decode).
"""
from __future__ import annotations

import os
import struct

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from apps.dicom.errors import InvalidDicomFile
from apps.dicom.files import inspect
from apps.dicom.header import PIXEL_KEYWORDS, HeaderError, ImageHeader, header_from_texts, valid_uid


def text(ds, keyword: str, limit: int = 64) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip().replace("\x00", "")[:limit]


def structural_problem(path: str | os.PathLike) -> str:
    """Why a file is incomplete (pydicom stops quietly at a cut), or "" when it is whole."""
    try:
        inspect(path)
    except InvalidDicomFile as exc:
        return exc.message.removeprefix(f"{os.fspath(path)}: ")
    return ""


def read_header(path: str | os.PathLike) -> ImageHeader:
    """The identity of an image file; HeaderError for a file that is not a usable image."""
    try:
        ds = pydicom.dcmread(path, defer_size=1024)
    except InvalidDicomError:
        raise HeaderError("not a DICOM file (no DICM marker after the 128-byte preamble)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise HeaderError(f"unreadable DICOM header: {str(exc).strip()[:300] or type(exc).__name__}") from None
    return header_from_dataset(ds, path)


def header_from_dataset(ds, path: str | os.PathLike, frames: int | None = None) -> ImageHeader:
    """The identity of an image read as `ds`; `frames` the file's frame count when `ds` holds fewer."""
    try:
        if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
            raise HeaderError(structural_problem(path) or "no pixel data (not an image: a report, a presentation "
                                                          "state, ...)")
        sop_uid = text(ds, "SOPInstanceUID", 200)
        if not valid_uid(sop_uid):
            raise HeaderError("no valid SOPInstanceUID" + (f" ({sop_uid[:70]!r})" if sop_uid else ""))
        for keyword in ("PatientID", "PatientName"):  # str() of several values is Python's repr of a list
            value = ds.get(keyword)
            if isinstance(value, MultiValue):
                raise HeaderError(f"the {keyword} holds {len(value)} values (separated by '\\'); a patient has one")
        return header_from_texts(lambda keyword, limit=64: text(ds, keyword, limit), int(ds.get("Rows", 0) or 0),
                                 int(ds.get("Columns", 0) or 0), frames or int(ds.get("NumberOfFrames", 1) or 1))
    except HeaderError:
        raise
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise HeaderError(f"unreadable DICOM header: {str(exc).strip()[:300] or type(exc).__name__}") from None
