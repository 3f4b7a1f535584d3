"""The frames of a stored instance, located in its file without reading the others (split.py): where each
frame's bytes are, as (file offset, length) pieces, for WADO-RS frames (served as stored) and for rendering
one frame of a 2 GB multi-frame instance.

Native pixel data: frame n (from 0) is the n-th run of Rows x Columns x SamplesPerPixel x BitsAllocated
bits of the value. Encapsulated (PS3.5 A.4): the Extended Offset Table, else the Basic Offset Table, names
each frame's first fragment; without either, one frame is every fragment, as many fragments as frames is
one each, and more fragments than frames are split after each fragment ending with a JPEG EOI / JPEG 2000
EOC marker (pydicom's rule). A header that lies (more frames than the pixel data holds, offsets that are
no fragment's) is a FrameError naming what does not fit, never a read past what the file holds.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset

from apps.dicom import split as splitting
from apps.dicom.errors import InvalidDicomFile

EOI = b"\xff\xd9"
MAX_TABLE_ENTRIES = 1 << 24  # offsets in a Basic or Extended Offset Table: more is no real image


class FrameError(ValueError):
    """The file cannot give the frame; the message says why."""


class NoSuchFrame(FrameError):
    """A frame number outside the instance's frames."""


@dataclass(frozen=True)
class StoredFrames:
    file: splitting.SplitFile
    header: Dataset  # the elements before the pixel data, file meta included
    count: int
    frame_length: int  # native: the bytes of one frame; 0 when encapsulated
    starts: tuple[int, ...] = ()  # encapsulated: each frame's first fragment (1 = the first after the table)
    # and one past the last fragment, so frame n is fragments starts[n] .. starts[n + 1] - 1

    @property
    def syntax(self) -> str:
        return self.file.info.transfer_syntax_uid

    @property
    def encapsulated(self) -> bool:
        return self.frame_length == 0

    def check(self, index: int) -> None:
        if not 0 <= index < self.count:
            raise NoSuchFrame(f"frame {index + 1} does not exist (the instance has {self.count})")

    def pieces(self, index: int) -> list[tuple[int, int]]:
        """(file offset, length) of frame `index` (from 0), in order."""
        self.check(index)
        pixels = self.file.pixels
        if not self.encapsulated:
            return [(pixels.value_start + index * self.frame_length, self.frame_length)]
        return [(pixels.offsets[n], pixels.lengths[n]) for n in range(self.starts[index], self.starts[index + 1])]

    def length(self, index: int) -> int:
        return sum(length for _, length in self.pieces(index))

    def read(self, fp: BinaryIO, index: int, limit: int | None = None) -> bytes:
        """Frame `index`'s bytes as stored; FrameError when they are more than `limit`."""
        pieces = self.pieces(index)
        total = sum(length for _, length in pieces)
        if limit is not None and total > limit:
            raise FrameError(f"frame {index + 1} holds {total} bytes, more than a frame of this image can")
        try:
            return b"".join(splitting.read_range(fp.fileno(), at, length, self.file.name) for at, length in pieces)
        except InvalidDicomFile:
            raise FrameError("the file changed while it was read") from None


def locate(fp: BinaryIO, name: str) -> StoredFrames:
    """The frames of the open regular file `fp`. Raises FrameError (InvalidDicomFile's message for a file
    that is not complete DICOM)."""
    try:
        found = splitting.split(fp, name, prove=False)  # the head is parsed below; the pixel data followed
    except InvalidDicomFile as exc:
        raise FrameError(exc.message.removeprefix(f"{name}: ")) from None
    except splitting.NotSplittable as exc:
        raise FrameError(f"its frames cannot be read one by one: {exc}") from None
    try:
        header = pydicom.dcmread(io.BytesIO(found.head))
    except Exception as exc:  # noqa: BLE001 - checked structure, yet pydicom may refuse a value
        raise FrameError(f"the header cannot be read ({type(exc).__name__})") from None
    pixels = found.pixels
    if pixels is None:
        raise FrameError("the instance has no pixel data")
    count = _number(header, "NumberOfFrames", 1)
    if count < 1:
        raise FrameError(f"NumberOfFrames is {count}")
    if not pixels.encapsulated:
        return StoredFrames(found, header, count, _native_length(header, count, pixels.length))
    return StoredFrames(found, header, count, 0, _frame_starts(fp, found, header, count))


def _number(header: Dataset, keyword: str, default: int) -> int:
    try:
        value = header.get(keyword, default)
        return int(default if value in (None, "") else value)
    except (TypeError, ValueError):
        raise FrameError(f"{keyword} is not a number") from None


def _native_length(header: Dataset, count: int, available: int) -> int:
    rows, columns = _number(header, "Rows", 0), _number(header, "Columns", 0)
    samples, bits = _number(header, "SamplesPerPixel", 1), _number(header, "BitsAllocated", 0)
    if min(rows, columns, samples, bits) < 1:
        raise FrameError("Rows, Columns, SamplesPerPixel and BitsAllocated must be above 0")
    frame_bits = rows * columns * samples * bits
    if count > 1 and frame_bits % 8:
        raise FrameError("frames of packed 1-bit pixel data that do not end on a byte cannot be read one by one")
    length = (frame_bits + 7) // 8
    if count * length > available:
        raise FrameError(f"the pixel data holds {available} bytes; {count} frames of {rows} x {columns} "
                         f"need {count * length}")
    return length


def _frame_starts(fp: BinaryIO, found: splitting.SplitFile, header: Dataset, count: int) -> tuple[int, ...]:
    pixels = found.pixels
    fragments = len(pixels.offsets) - 1  # the first item is the Basic Offset Table
    if fragments < 1:
        raise FrameError("the encapsulated pixel data holds no fragment")
    order = "<" if found.info.transfer_syntax_uid != "1.2.840.10008.1.2.2" else ">"
    first_item = pixels.offsets[1] - 8
    # a table's offsets count from the first fragment's item tag: fragment k's item is at offsets[k] - 8
    position = {pixels.offsets[k] - 8 - first_item: k for k in range(1, fragments + 1)}
    table = _extended_offsets(header, order) or _basic_offsets(fp, found, order)
    if table:
        try:
            starts = [position[offset] for offset in table[:count]]
        except KeyError:
            raise FrameError("the offset table names a position where no fragment starts") from None
        if len(starts) < count:
            raise FrameError(f"the offset table lists {len(table)} frames; NumberOfFrames says {count}")
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise FrameError("the offset table's frames are not in order")
        return (*starts, fragments + 1)
    if count == 1:
        return 1, fragments + 1
    if fragments == count:
        return (*range(1, fragments + 1), fragments + 1)
    if fragments < count:
        raise FrameError(f"the pixel data holds {fragments} fragments for {count} frames")
    starts = [1]
    for k in range(1, fragments):  # the last fragment ends the last frame whatever it holds
        if len(starts) == count:
            break
        tail = os.pread(fp.fileno(), min(10, pixels.lengths[k]), pixels.offsets[k] + max(0, pixels.lengths[k] - 10))
        if EOI in tail:
            starts.append(k + 1)
    if len(starts) < count:
        raise FrameError(f"only {len(starts)} of {count} frames found in the encapsulated pixel data")
    return (*starts, fragments + 1)


def _extended_offsets(header: Dataset, order: str) -> list[int]:
    raw = header.get("ExtendedOffsetTable")
    if raw is None or not raw.value:
        return []
    data = bytes(raw.value)
    if len(data) % 8 or len(data) // 8 > MAX_TABLE_ENTRIES:
        raise FrameError("the Extended Offset Table is malformed")
    return list(struct.unpack(f"{order}{len(data) // 8}Q", data))


def _basic_offsets(fp: BinaryIO, found: splitting.SplitFile, order: str) -> list[int]:
    pixels = found.pixels
    length = pixels.lengths[0]
    if not length:
        return []
    if length % 4 or length // 4 > min(MAX_TABLE_ENTRIES, len(pixels.offsets) - 1):
        raise FrameError("the Basic Offset Table is malformed (more offsets than fragments)")
    data = splitting.read_range(fp.fileno(), pixels.offsets[0], length, found.name)
    return list(struct.unpack(f"{order}{length // 4}L", data))
