"""The common image read without pydicom. An import's files are nearly all uncompressed little-endian
greyscale with a window and a plain ASCII header (CT, MR, CR, DX): for them the header, the window, the
pixels and the catalog's entry come from one read through flat.elements (a pydicom dataset and its element
conversions cost more than the JPEG). Anything else, or anything odd, raises flat.Slow (quick_read_and_render
answers None) and goes render.py's way, pydicom's, which says what is wrong with a bad file; the two agree
on every file both read (tests/dicom/test_render.py). This module and what it imports need no pydicom: an
import's decoder processes start with it alone (pydicom's import is ~0.8 s of CPU), and import render.py only
when the pool sends one a file that goes its way (apps/imports/pool.py).

Also here, shared with render.py: the VOI window as numbers, and the uint8 table of a rescale + window for
every possible stored value (computed once, applied in one gather instead of float arithmetic per pixel).
"""
from __future__ import annotations

import functools
import math
import os
import struct

import numpy as np
from PIL import Image

from apps.dicom import flat, flat_entry
from apps.dicom.element_facts import EXPLICIT_LE, IMPLICIT_LE
from apps.dicom.header import ImageHeader, header_from_texts, valid_uid
from apps.dicom.limits import LARGE_FILE_BYTES
from apps.dicom.paths import NotRegularFile, open_regular

JPEG_QUALITY = 90
MAX_PIXELS = 100_000_000  # per frame; the largest radiographs are ~ 50 megapixels
NATIVE_LITTLE_ENDIAN = frozenset({IMPLICIT_LE, EXPLICIT_LE})
QUICK_MAX_BYTES = LARGE_FILE_BYTES  # a larger file goes render.read_frame's way: only the frame shown is read
_TAG = {
    "SpecificCharacterSet": 0x00080005, "SOPInstanceUID": 0x00080018, "Modality": 0x00080060,
    "PatientName": 0x00100010, "PatientID": 0x00100020, "PatientBirthDate": 0x00100030, "PatientSex": 0x00100040,
    "StudyInstanceUID": 0x0020000D, "SamplesPerPixel": 0x00280002, "PhotometricInterpretation": 0x00280004,
    "NumberOfFrames": 0x00280008, "Rows": 0x00280010, "Columns": 0x00280011, "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101, "PixelRepresentation": 0x00280103, "WindowCenter": 0x00281050,
    "WindowWidth": 0x00281051, "RescaleIntercept": 0x00281052, "RescaleSlope": 0x00281053,
    "ModalityLUTSequence": 0x00283000, "VOILUTSequence": 0x00283010, "VOILUTFunction": 0x00281056,
    "FloatPixelData": 0x7FE00008, "DoubleFloatPixelData": 0x7FE00009, "PixelData": 0x7FE00010}
_WANTED = frozenset(_TAG.values()) | frozenset(flat_entry.TAGS)
_NOT_QUICK = ("ModalityLUTSequence", "VOILUTSequence", "FloatPixelData", "DoubleFloatPixelData")
_US = struct.Struct("<H").unpack_from


def voi_window(center: float, width: float, function: str):
    """values after the modality LUT -> floats in [0, 1] by a window of width > 0 (PS3.3 C.11.2.1.2)."""
    if function == "SIGMOID":
        return lambda x: 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return lambda x: np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        width = 1.0
    # C.11.2.1.2.1: the linear window with its half-pixel offsets.
    return lambda x: np.clip((x - (center - 0.5)) / max(width - 1, 1e-9) + 0.5, 0.0, 1.0)


@functools.lru_cache(maxsize=64)
def linear_lut(dtype: str, slope: float, intercept: float, center: float, width: float, function: str,
               invert: bool) -> np.ndarray:
    """uint8 display value for every raw bit pattern of `dtype`, for one rescale (slope != 0) + window."""
    kind = np.dtype(dtype)
    domain = np.arange(2 ** (8 * kind.itemsize), dtype=np.uint8 if kind.itemsize == 1 else np.uint16).view(kind)
    unit = voi_window(center, width, function)(domain.astype(np.float64) * slope + intercept)
    lut8 = np.rint(unit * 255.0).astype(np.uint8)
    lut8 = 255 - lut8 if invert else lut8
    lut8.flags.writeable = False
    return lut8


@functools.lru_cache(maxsize=64)
def raw_bits_lut(dtype: str, stored: int, slope: float, intercept: float, center: float, width: float,
                 function: str, invert: bool) -> np.ndarray:
    """linear_lut indexed by the raw bit patterns as they lie in the file: the bits above HighBit dropped
    (and the sign extended) once per pattern instead of once per pixel."""
    lut8 = linear_lut(dtype, slope, intercept, center, width, function, invert)
    kind = np.dtype(dtype)
    raw = np.arange(2 ** (8 * kind.itemsize), dtype=np.uint8 if kind.itemsize == 1 else np.uint16)
    values = raw.view(kind)
    shift = 8 * kind.itemsize - stored
    if shift:
        values = (values << shift) >> shift if kind.kind == "i" else values & ((1 << stored) - 1)
    out = np.take(lut8, values.view(raw.dtype))
    out.flags.writeable = False
    return out


def save_jpeg(pixels: np.ndarray, target: str | os.PathLike, quality: int = JPEG_QUALITY) -> None:
    image = Image.fromarray(pixels)
    try:
        image.save(target, "JPEG", quality=quality)
    except FileNotFoundError:
        # The folder is made only when missing: an import's decoders write every JPEG into one folder that
        # exists, where a makedirs per image cost three system calls and ~15 us of this process's CPU.
        os.makedirs(os.path.dirname(os.fspath(target)) or ".", exist_ok=True)
        image.save(target, "JPEG", quality=quality)


def quick_read_and_render(source: str, target: str):
    """render.read_and_render's answer for the common image, or None for every other file (and for a file
    that cannot be read: pydicom's way names the problem)."""
    try:
        with open_regular(source) as fp:
            if os.fstat(fp.fileno()).st_size > QUICK_MAX_BYTES:
                return None
            data = fp.read()
        header, pixels, entry = quick_image(data)
    except (NotRegularFile, OSError, flat.Slow, struct.error, ValueError, UnicodeDecodeError):
        return None
    save_jpeg(pixels, target)
    return header, (int(pixels.shape[1]), int(pixels.shape[0])), "", entry


def quick_image(data: bytes) -> tuple[ImageHeader, np.ndarray, dict | None]:
    """(header, display pixels, the catalog's entry or None) of the common image; flat.Slow for others."""
    syntax, found = flat.elements(data, len(data), _WANTED, _TAG["PixelData"])
    if syntax not in NATIVE_LITTLE_ENDIAN or "PixelData" not in _present(found) or _present(found) & set(_NOT_QUICK):
        raise flat.Slow

    def text(keyword: str, limit: int = 64) -> str:
        vr, start, length = found.get(_TAG[keyword], (None, 0, 0))
        raw = data[start:start + length]
        if keyword.endswith("UID"):
            raw = raw.rstrip(b"\x00")  # a UID's padding
        value = raw.decode("ascii")
        if "\\" in value or not value.isprintable():
            raise flat.Slow  # several values, another character set, control characters: pydicom's
        return value.strip()[:limit]

    def number(keyword: str, default: int | None = None) -> int:
        """An unsigned short; absent: `default` (None: required, pydicom's way says what is missing)."""
        if _TAG[keyword] not in found:
            if default is None:
                raise flat.Slow
            return default
        vr, start, length = found[_TAG[keyword]]
        if length != 2:
            raise flat.Slow
        return _US(data, start)[0]

    def decimal(keyword: str, default: float | None, *, several: bool = False) -> float | None:
        value = text(keyword, 1024) if not several else _first_of(found, data, _TAG[keyword])
        if not value:
            return default
        result = float(value)
        if not math.isfinite(result):
            raise flat.Slow
        return result

    sop_uid = text("SOPInstanceUID", 200)
    if not valid_uid(sop_uid):
        raise flat.Slow
    text("SpecificCharacterSet")  # ASCII text under any character set is ASCII
    rows, cols, allocated = number("Rows"), number("Columns"), number("BitsAllocated")
    stored, signed = number("BitsStored"), number("PixelRepresentation") == 1
    frames_text = text("NumberOfFrames")
    frames = int(frames_text) if frames_text else 1
    photometric = text("PhotometricInterpretation").upper()
    if (number("SamplesPerPixel", 1) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2") or frames < 0
            or allocated not in (8, 16) or not 0 < stored <= allocated or not 0 < rows * cols <= MAX_PIXELS):
        raise flat.Slow
    frames = frames or 1
    center, width = decimal("WindowCenter", None, several=True), decimal("WindowWidth", None, several=True)
    slope, intercept = decimal("RescaleSlope", 1.0) or 1.0, decimal("RescaleIntercept", 0.0) or 0.0
    if center is None or width is None or width <= 0:
        raise flat.Slow  # no window: pydicom's way finds the min/max one
    vr, start, length = found[_TAG["PixelData"]]
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    if vr not in (None, b"OB", b"OW") or length < rows * cols * dtype.itemsize * frames:
        raise flat.Slow
    raw = np.frombuffer(data, dtype=np.uint8 if allocated == 8 else np.uint16, count=rows * cols, offset=start)
    lut = raw_bits_lut(dtype.str, stored, slope, intercept, center, width,
                       text("VOILUTFunction").upper() or "LINEAR", photometric == "MONOCHROME1")
    header = header_from_texts(text, rows, cols, frames)
    try:
        entry = flat_entry.entry_from_elements(data, syntax, found, len(data))
    except (flat_entry.EntryError, flat.Slow, struct.error, ValueError):
        entry = None  # the catalog reads the file its own way, and says why it cannot hold it
    return header, np.take(lut, raw.reshape(rows, cols)), entry


def _present(found: dict) -> set[str]:
    return {keyword for keyword, tag in _TAG.items() if tag in found}


def _first_of(found: dict, data: bytes, tag: int) -> str:
    """The first of a decimal string's values (WindowCenter and WindowWidth may hold several)."""
    vr, start, length = found.get(tag, (None, 0, 0))
    value = data[start:start + length].decode("ascii").split("\\")[0]
    if not value.isprintable():
        raise flat.Slow
    return value.strip()
