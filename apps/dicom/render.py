"""DICOM -> 8-bit display image -> JPEG, the way a viewer shows it at first sight.

Greyscale: the modality LUT (Modality LUT Sequence, or RescaleSlope/Intercept), then the VOI LUT
Sequence or WindowCenter/Width (the first value when there are several; a min/max window when there
is none), and MONOCHROME1 inverted so that high values are dark. Colour: RGB as stored, YBR converted
to RGB by pydicom, PALETTE COLOR through its lookup tables. Multi-frame images show one frame (the
first by default); of a file over files.LARGE_FILE_BYTES only that frame is read (read_frame).
Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg with its libjpeg, openjpeg and
rle plugins: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE).

Speed, because an import renders every image it files: the common image (uncompressed greyscale with a
window and a plain header) is read without pydicom by flat_image.py, first (an import's decoder processes run
that alone, and read_and_render_by_pydicom for the other files: apps/imports/pool.py); here too uncompressed
greyscale is read straight from the pixel bytes, and the window is computed once per possible stored value
(a lookup table of at most 65,536 entries, cached for the common rescale + window case: flat_image.linear_lut)
and applied in one gather, instead of float arithmetic on every pixel.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from apps.dicom import frames
from apps.dicom.dataset_header import header_from_dataset, structural_problem
from apps.dicom.files import LARGE_FILE_BYTES
from apps.dicom.flat_image import (
    JPEG_QUALITY,
    MAX_PIXELS,
    NATIVE_LITTLE_ENDIAN,
    linear_lut,
    quick_read_and_render,
    save_jpeg,
    voi_window,
)
from apps.dicom.header import PIXEL_KEYWORDS, HeaderError, ImageHeader
from apps.dicom.paths import NotRegularFile, open_regular


class RenderError(Exception):
    """A file that cannot be shown, with the reason in words (not DICOM, no pixel data, undecodable...)."""


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    frames: int


def first(value) -> float:
    """WindowCenter and friends may be multi-valued: the first value is the default view."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0]
    return float(value)


class NoFrame(RenderError):
    """A frame number outside the file's frames."""


@dataclass(frozen=True)
class Frame:
    """One frame of a file, ready for display_array(ds, index): the header with pixel data holding the frame
    (all the file's frames when the file is small; this one alone when it is large), and the file's frame count."""
    ds: Dataset
    index: int
    frames: int

    def display(self) -> np.ndarray:
        return display_array(self.ds, self.index)


def read_dataset(path: str | os.PathLike) -> Dataset:
    """The whole file, pixel data included; RenderError names what is wrong with it."""
    return _reading(path, lambda fp: _whole(fp, path))


def read_frame(path: str | os.PathLike, index: int = 0) -> Frame:
    """Frame `index` (from 0) of the file. A file up to files.LARGE_FILE_BYTES is read whole (the import's
    common case, one read); a larger one gives its header and that frame only (apps/dicom/frames.py), so a
    2 GB multi-frame instance costs one frame of memory. RenderError names what is wrong, NoFrame when the
    file has no such frame."""
    def read(fp):
        if os.fstat(fp.fileno()).st_size <= LARGE_FILE_BYTES:
            ds = _whole(fp, path)
            count = int(ds.get("NumberOfFrames", 1) or 1)
            if not 0 <= index < count:
                raise NoFrame(f"frame {index + 1} does not exist (the instance has {count})")
            return Frame(ds, index, count)
        return _one_frame(fp, path, index)
    return _reading(path, read)


def _whole(fp, path) -> Dataset:
    ds = pydicom.dcmread(fp)
    ds.filename = os.fspath(path)
    return ds


def _one_frame(fp, path, index: int) -> Frame:
    try:
        stored = frames.locate(fp, os.fspath(path))
        stored.check(index)
    except frames.NoSuchFrame as exc:
        raise NoFrame(str(exc)) from None
    except frames.FrameError as exc:
        raise RenderError(str(exc)) from None
    ds = stored.header
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:  # before reading a frame a header sizes
        raise RenderError(f"the image is too large to render ({rows} x {cols} pixels)")
    raw = rows * cols * int(ds.get("SamplesPerPixel", 1) or 1) * max(8, int(ds.get("BitsAllocated", 8) or 8)) // 8
    try:  # a compressed frame far larger than the frame it decodes to is no frame of this image
        data = stored.read(fp, index, limit=2 * raw + (1 << 20))
    except frames.FrameError as exc:
        raise RenderError(str(exc)) from None
    tag = stored.file.pixels.tag
    keyword = {0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}.get(tag, "PixelData")
    setattr(ds, keyword, encapsulate([data]) if stored.encapsulated else data)
    for table in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if table in ds:
            del ds[table]
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = 1
    ds.filename = os.fspath(path)
    return Frame(ds, 0, stored.count)


def _reading(path, read):
    try:
        with open_regular(path) as fp:  # a FIFO put where a file was would block a plain open for ever
            return read(fp)
    except NotRegularFile as exc:
        raise RenderError(f"{exc.strerror}: not read") from None
    except InvalidDicomError:
        raise RenderError("not a DICOM file (no DICM marker after the 128-byte preamble)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise RenderError(f"unreadable DICOM file: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    """An exception as one short line (decoders put the useful part on the second line)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return (text or type(exc).__name__)[:300]


def frame_pixels(ds: Dataset, frame: int = 0) -> np.ndarray:
    """The stored values of one frame (YBR already converted to RGB)."""
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        filename = getattr(ds, "filename", None)
        raise RenderError((isinstance(filename, str) and structural_problem(filename))
                          or "no pixel data (not an image: a report, a presentation state, ...)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:  # a header is untrusted input: never let it size a huge allocation
        raise RenderError(f"the image is too large to render ({rows} x {cols} pixels)")
    if not 0 <= frame < frames:
        raise RenderError(f"frame {frame} asked for, the image has {frames}")
    native = native_greyscale(ds, frame, frames)
    if native is not None:
        return native
    try:
        return pixel_array(ds, index=frame if frames > 1 else None)
    except Exception as exc:  # decoders raise anything from ValueError to RuntimeError
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = syntax.name if syntax else "unknown transfer syntax"
        if "less than expected" in str(exc) or "truncated" in str(exc).lower():
            raise RenderError(f"pixel data truncated ({name}): {one_line(exc)}") from None
        raise RenderError(f"cannot decode the pixel data ({name}): {one_line(exc)}") from None


def native_greyscale(ds: Dataset, frame: int, frames: int) -> np.ndarray | None:
    """The common case read straight from the bytes (uncompressed little-endian greyscale, 8 or 16 bits):
    pydicom's general path spends more time checking than this takes. None when it does not apply."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or str(meta.get("TransferSyntaxUID", "")) not in NATIVE_LITTLE_ENDIAN:
        return None
    try:
        rows, cols, allocated = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
        stored, signed = int(ds.BitsStored), int(ds.PixelRepresentation) == 1
        if int(ds.get("SamplesPerPixel", 1)) != 1 or allocated not in (8, 16) or not 0 < stored <= allocated:
            return None
        data = ds.PixelData
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    size = rows * cols * dtype.itemsize
    if not isinstance(data, bytes) or len(data) < size * frames:
        return None  # pydicom's path names what is wrong
    arr = np.frombuffer(data, dtype=dtype, count=rows * cols, offset=size * frame).reshape(rows, cols)
    if stored < allocated:  # bits above HighBit are not pixel data: drop them, sign-extend if signed
        shift = allocated - stored
        arr = (arr << shift) >> shift if signed else arr & ((1 << stored) - 1)
    return arr


def window_function(ds: Dataset, lo: float, hi: float):
    """values after the modality LUT -> floats in [0, 1], by the dataset's VOI (or the lo..hi range)."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or first(width) <= 0:
        span = max(hi - lo, 1e-9)
        return lambda x: np.clip((x - lo) / span, 0.0, 1.0)
    return voi_window(first(center), first(width), str(ds.get("VOILUTFunction", "LINEAR")).upper())


def to_unit(values: np.ndarray, ds: Dataset, lo: float, hi: float) -> np.ndarray:
    """Modality-LUT output -> [0, 1] through the VOI LUT Sequence, or the window."""
    if "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        out = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0, prefer_lut=True).astype(np.float64)
        bits = int(lut.LUTDescriptor[2]) if "LUTDescriptor" in lut else 16
        return np.clip(out / float(2 ** bits - 1), 0.0, 1.0)
    return window_function(ds, lo, hi)(values)


def modality_values(values: np.ndarray, ds: Dataset) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(values, ds).astype(np.float64)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return values.astype(np.float64) * slope + intercept


def linear_case(ds: Dataset) -> bool:
    """Rescale + window, no lookup-table sequences: the common case, whose table can be cached."""
    return ("ModalityLUTSequence" not in ds and "VOILUTSequence" not in ds
            and ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
            and first(ds.WindowWidth) > 0)


def greyscale(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored greyscale values -> uint8 display values."""
    invert = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    small_int = arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2
    unsigned = arr.view(np.uint8 if arr.dtype.itemsize == 1 else np.uint16) if small_int else None
    if small_int and linear_case(ds):
        lut8 = linear_lut(arr.dtype.str, float(ds.get("RescaleSlope", 1) or 1),
                          float(ds.get("RescaleIntercept", 0) or 0), first(ds.WindowCenter),
                          first(ds.WindowWidth), str(ds.get("VOILUTFunction", "LINEAR")).upper(), invert)
        return np.take(lut8, unsigned)
    if small_int:
        # Every possible stored value once: index with the raw bits (a uint view of the array).
        domain = np.arange(2 ** (8 * arr.dtype.itemsize), dtype=unsigned.dtype).view(arr.dtype)
        mod = modality_values(domain, ds)
        lo_raw, hi_raw = int(arr.min()), int(arr.max())
        seen = mod[(domain >= lo_raw) & (domain <= hi_raw)]
        lut8 = np.rint(to_unit(mod, ds, float(seen.min()), float(seen.max())) * 255.0).astype(np.uint8)
        return np.take(255 - lut8 if invert else lut8, unsigned)
    mod = modality_values(arr, ds)
    out = np.rint(np.nan_to_num(to_unit(mod, ds, float(np.nanmin(mod)), float(np.nanmax(mod)))) * 255.0)
    out = out.astype(np.uint8)
    return 255 - out if invert else out


def to_8bit_colour(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        return np.rint(np.clip(arr, 0.0, 1.0) * 255).astype(np.uint8)
    return (arr.astype(np.uint32) >> max(bits - 8, 0)).astype(np.uint8)


def display_array(ds: Dataset, frame: int = 0) -> np.ndarray:
    """One frame as uint8, shape (rows, cols) for greyscale or (rows, cols, 3) for colour."""
    arr = frame_pixels(ds, frame)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:
            raise RenderError(f"cannot apply the palette colour lookup tables: {one_line(exc)}") from None
        entry_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return to_8bit_colour(rgb, entry_bits)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return to_8bit_colour(arr[..., :3], int(ds.get("BitsStored", 8) or 8))
    if arr.ndim != 2:
        raise RenderError(f"unexpected pixel array shape {arr.shape} for {photometric}")
    return greyscale(arr, ds)


def render_jpeg(source: str | os.PathLike | Frame, target: str | os.PathLike, *, frame: int = 0,
                quality: int = JPEG_QUALITY) -> Rendered:
    """Write one frame of a DICOM file as a JPEG; returns its size. Raises RenderError."""
    picture = source if isinstance(source, Frame) else read_frame(source, frame)
    pixels = picture.display()
    save_jpeg(pixels, target, quality)
    return Rendered(width=int(pixels.shape[1]), height=int(pixels.shape[0]), frames=picture.frames)


def read_and_render(source: str, target: str) -> tuple[ImageHeader | None, tuple[int, int] | None, str, dict | None]:
    """Read the file once, take its header, write its JPEG. Returns (header, (width, height), "", the
    catalog's entry or None) or (header or None, None, the reason it could not be imported, None). The
    catalog's entry (catalog_entry.read_entry's) comes with the common image, read the quick way
    (flat_image.py); for other files the catalog reads its entry itself."""
    quick = quick_read_and_render(source, target)
    return quick if quick is not None else read_and_render_by_pydicom(source, target)


def read_and_render_by_pydicom(source: str, target: str) -> tuple[ImageHeader | None, tuple[int, int] | None, str,
                                                                  None]:
    """read_and_render's answer for a file the quick way does not take: read by pydicom, which names what is
    wrong with a bad one."""
    header = None
    try:
        picture = read_frame(source)
        header = header_from_dataset(picture.ds, source, frames=picture.frames)
        rendered = render_jpeg(picture, target)
    except (RenderError, HeaderError) as exc:
        return header, None, str(exc), None
    except MemoryError:
        return header, None, "the image is too large to decode in memory", None
    return header, (rendered.width, rendered.height), "", None


def render_file(source: str, target: str) -> tuple[int, int] | str:
    """(width, height) of the JPEG written, or the reason it could not be."""
    header, size, problem, entry = read_and_render(source, target)
    return size if size else problem
