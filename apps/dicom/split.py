"""A Part-10 file as its head, read into memory, and its pixel data element, located and left on disk.

The head is the preamble, the file meta and the elements before the pixel data: a few kilobytes to a few
megabytes whatever the size of the image. So the portal renders, serves frames of, rewrites and
de-identifies a 2 GB multi-frame instance (whole-slide images, long cine loops, tomosynthesis) with the
memory of a CT slice: the pixel data is read by ranges (os.pread) or copied file to file, never whole.

The file is checked on the way as files.read_checked checks a file it reads whole: the head's elements
walked, the pixel data's declared length, or each of its fragments, within the file, and what follows it
(digital signatures, padding: at most TRAILER_MAX) walked too. A deflated dataset cannot be read in parts,
nor is a file whose first HEAD_MAX bytes hold no pixel data an image's header: NotSplittable, and the
caller reads it whole (such files are rare).
"""
from __future__ import annotations

import dataclasses
import io
import mmap
import os
import struct
from array import array
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from apps.dicom import files
from apps.dicom.element_codec import ITEM, LONG_VRS, SEQUENCE_END, UNDEFINED
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.paths import open_regular

HEAD_FIRST = 64 * 1024  # the first read; a head larger than this is read again in doubling steps
HEAD_MAX = 64 * 1024 * 1024  # elements before the pixel data beyond this are not an image's header
TRAILER_MAX = 1 << 20  # what may follow the pixel data (signatures, padding), walked in memory
COPY_CHUNK = 1 << 20


class NotSplittable(Exception):
    """A dataset that cannot be read in parts (deflated)."""


@dataclass(frozen=True)
class Pixels:
    """The top-level pixel data element: file offsets of its tag (`start`), its value and its end."""
    tag: int
    start: int
    value_start: int
    length: int  # the value's length; UNDEFINED for encapsulated pixel data
    end: int  # after the value (after the sequence delimiter when encapsulated)
    offsets: array | None = None  # encapsulated: the file offset of each item's value, Basic Offset Table first
    lengths: array | None = None  # and each item's length

    @property
    def encapsulated(self) -> bool:
        return self.length == UNDEFINED


@dataclass(frozen=True)
class SplitFile:
    info: files.DicomFileInfo
    head: bytes  # the file up to the pixel data element (all of it when it has none)
    pixels: Pixels | None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def rest(self) -> int:
        """Where what follows the head ends: the pixel data element with what follows it is [len(head), rest)."""
        return self.info.size


def split(fp: BinaryIO, name: str, *, prove: bool = True) -> SplitFile:
    """Read the head of the open regular file `fp` and locate its pixel data, checking the structure: with
    `prove`, every element of the head and of what follows the pixel data too (what a caller that writes
    or sends the file needs; a reader of frames, which parses the head with pydicom, does without).
    Raises InvalidDicomFile naming `name`, NotSplittable for a dataset that cannot be read in parts."""
    info = files.read_meta_open(fp, name)
    if files._uid(info.transfer_syntax_uid).is_deflated:
        raise NotSplittable("a deflated dataset cannot be read in parts")
    fd, start = fp.fileno(), info.dataset_offset
    want = HEAD_FIRST
    while True:
        head = os.pread(fd, min(want, info.size), 0)
        try:
            end = files.header_end(memoryview(head)[start:], info.transfer_syntax_uid)
        except InvalidDicomFile as exc:
            raise InvalidDicomFile(f"{name}: {exc.message}") from None
        if end is not None or len(head) >= info.size:
            break
        if want >= HEAD_MAX:  # no image's header: a large non-image (raw data, a document) goes whole
            raise NotSplittable(f"no pixel data within the first {HEAD_MAX // (1 << 20)} MB")
        want *= 2
    if len(head) < info.size and end is None:
        raise InvalidDicomFile(f"{name}: changed while it was read")
    if end is None:  # the whole file, and no pixel data in it: the head is the file
        _check(name, memoryview(head)[start:], info)
        return SplitFile(info, head, None)
    head = head[:start + end]
    if prove:
        _check(name, memoryview(head)[start:], info, image=False)
    pixels = _pixels(fd, name, info, start + end)
    trailer = info.size - pixels.end
    if prove and trailer > TRAILER_MAX:
        raise InvalidDicomFile(f"{name}: more than {TRAILER_MAX} bytes follow the pixel data")
    if prove and trailer:
        _check(name, os.pread(fd, trailer, pixels.end), info, image=False)
    return SplitFile(info, head, pixels)


def _check(name: str, dataset, info: files.DicomFileInfo, image: bool = True) -> None:
    try:
        files.check_dataset_bytes(dataset, info.transfer_syntax_uid, info.sop_class_uid if image else "")
    except InvalidDicomFile as exc:
        raise InvalidDicomFile(f"{name}: {exc.message}") from None


def _pixels(fd: int, name: str, info: files.DicomFileInfo, at: int) -> Pixels:
    ts = files._uid(info.transfer_syntax_uid)
    little = ts.is_little_endian if ts.is_transfer_syntax else True
    implicit = ts.is_implicit_VR if ts.is_transfer_syntax else False
    order = "<" if little else ">"
    raw = os.pread(fd, 12, at)
    if len(raw) < (8 if implicit else 12):
        raise InvalidDicomFile(f"{name}: truncated: the file ends inside the pixel data element's header")
    group, element = struct.unpack_from(order + "HH", raw)
    tag = group << 16 | element
    if tag not in files.PIXEL_TAGS:  # no pixel data, a signature or padding at the end: not an image to split
        raise NotSplittable(f"({group:04X},{element:04X}) ends the header, not pixel data")
    if implicit:
        (length,), value_start = struct.unpack_from(order + "L", raw, 4), at + 8
    elif raw[4:6] in LONG_VRS:
        (length,), value_start = struct.unpack_from(order + "L", raw, 8), at + 12
    else:
        (length,), value_start = struct.unpack_from(order + "H", raw, 6), at + 8
    if length != UNDEFINED:
        if value_start + length > info.size:
            raise InvalidDicomFile(f"{name}: truncated: the pixel data needs {length} bytes from byte "
                                   f"{value_start} but the file ends at byte {info.size}")
        return Pixels(tag, at, value_start, length, value_start + length)
    offsets, lengths = array("Q"), array("Q")
    pos = value_start
    while True:
        item = os.pread(fd, 8, pos)
        if len(item) < 8:
            raise InvalidDicomFile(f"{name}: truncated: the encapsulated pixel data has no sequence delimiter "
                                   f"before byte {info.size}")
        group, element, length = struct.unpack(order + "HHL", item)
        if group << 16 | element == SEQUENCE_END:
            return Pixels(tag, at, value_start, UNDEFINED, pos + 8, offsets, lengths)
        if group << 16 | element != ITEM or length == UNDEFINED:
            raise InvalidDicomFile(f"{name}: broken encapsulated pixel data: ({group:04X},{element:04X}) at "
                                   f"byte {pos} is no fragment")
        if pos + 8 + length > info.size:
            raise InvalidDicomFile(f"{name}: truncated: a pixel data fragment needs {length} bytes from byte "
                                   f"{pos + 8} but the file ends at byte {info.size}")
        offsets.append(pos + 8)
        lengths.append(length)
        pos += 8 + length


def read_range(fd: int, offset: int, length: int, name: str = "the file") -> bytes:
    """`length` bytes at `offset`; InvalidDicomFile when the file no longer holds them."""
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise InvalidDicomFile(f"{name}: changed while it was read")
    return data


def chunks(fd: int, offset: int, length: int, name: str = "the file", size: int = COPY_CHUNK,
           changed: str = "changed while it was read") -> Iterator[bytes]:
    """The bytes of [offset, offset + length) in pieces of at most `size`, read one by one; InvalidDicomFile
    saying `changed` when the file ends sooner."""
    end = offset + length
    while offset < end:
        piece = os.pread(fd, min(size, end - offset), offset)
        if not piece:
            raise InvalidDicomFile(f"{name}: {changed}")
        offset += len(piece)
        yield piece


def copy_range(fd: int, offset: int, length: int, out: BinaryIO, name: str = "the file") -> None:
    """Append [offset, offset + length) of `fd` to `out` without holding it (a chunk at a time)."""
    for piece in chunks(fd, offset, length, name):
        out.write(piece)


@dataclass(frozen=True)
class FileRange:
    """Bytes left in a file (`path`, which must still be `size` bytes long when they are read): what a
    transform kept of a large original, such as the pixel data element after a new head."""
    path: str
    offset: int
    length: int
    size: int

    def _open(self):
        fp = open_regular(self.path)
        if os.fstat(fp.fileno()).st_size != self.size:
            fp.close()
            raise InvalidDicomFile(f"{self.path}: changed since it was read")
        return fp

    def read_into(self, at: int, into: memoryview) -> None:
        """Fill `into` from byte `at` of the range, read straight into it (no copy of a zip stream's block)."""
        with self._open() as fp:
            done = 0
            while done < len(into):
                count = os.preadv(fp.fileno(), [into[done:]], self.offset + at + done)
                if not count:
                    raise InvalidDicomFile(f"{self.path}: changed since it was read")
                done += count

    def chunks(self) -> Iterator[bytes]:
        with self._open() as fp:
            yield from chunks(fp.fileno(), self.offset, self.length, self.path)


@dataclass
class CompleteFile:
    """A file proven complete DICOM, open for reading its dataset in place (`fp` for socket.sendfile)."""
    fp: io.BufferedReader
    info: files.DicomFileInfo

    @property
    def dataset_size(self) -> int:
        return self.info.size - self.info.dataset_offset

    def chunks(self, size: int = COPY_CHUNK) -> Iterator[bytes]:
        """The file's bytes in pieces of at most `size`, read one by one."""
        return chunks(self.fp.fileno(), 0, self.info.size, self.fp.name, size,
                      "changed while it was being sent; send it again")


@contextmanager
def open_complete(path: str | os.PathLike, info: files.DicomFileInfo) -> Iterator[CompleteFile]:
    """files.read_complete's proof without reading the file, for sending a file over LARGE_FILE_BYTES where it
    lies: the head walked in memory, the pixel data followed by its element and fragment headers read one
    by one, what follows it walked (split), so neither the pixel data nor the pages around its fragments'
    headers are read or mapped (a read-only mapping walked fragment by fragment counted a 286 MB file of
    15,000 fragments in the process's RSS). A dataset that cannot be split (deflated, no pixel data) is
    walked through a mapping. Raises InvalidDicomFile naming the file."""
    name = os.fspath(path)
    try:
        fp = open_regular(path)
    except OSError as exc:
        raise InvalidDicomFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    with fp:
        size = os.fstat(fp.fileno()).st_size
        if size != info.size or size <= info.dataset_offset:
            raise InvalidDicomFile(f"{name}: changed while it was being sent; send it again")
        try:
            found = split(fp, name)
        except NotSplittable:
            with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                files.prove_complete(name, mapped, info)
        else:
            if found.info != dataclasses.replace(info, name=name):
                raise InvalidDicomFile(f"{name}: changed while it was being sent; send it again")
        yield CompleteFile(fp, info)
