"""Read what a DICOM file is (SOP class, instance, transfer syntax) and prove it is complete, without
decoding it: sending and storing stay byte-for-byte, and a bad file is named with its problem.

pydicom reads a truncated file without complaint (it stops at the end), so completeness is checked
here by walking the element headers: every declared length must fit in the file, every undefined
length sequence must be closed, and the last element must end exactly where the file ends.
"""
from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import UID

from apps.dicom.element_codec import ITEM, ITEM_END, LONG_VRS, MAX_DEPTH, SEQUENCE_END, UNDEFINED, element_bytes
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.limits import LARGE_FILE_BYTES as LARGE_FILE_BYTES  # the senders and writers read it here
from apps.dicom.paths import open_regular, read_regular
from apps.dicom.syntaxes import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}  # Float / Double Float / Pixel Data
FIRST_PIXEL_TAG = min(PIXEL_TAGS)
IDENTITY_TAGS = {0x0020000D: "study", 0x0020000E: "series", 0x00080018: "sop",  # read on the way, top level
                 0x00100020: "patient"}


@dataclass(frozen=True)
class DatasetIdentity:
    """Which study, series and instance a dataset says it is (its own top-level UIDs)."""

    study: str = ""
    series: str = ""
    sop: str = ""
    patient: str = ""  # PatientID as ASCII (other bytes replaced)


@dataclass(frozen=True)
class DicomFileInfo:
    name: str  # the path, or "<bytes>" for data given in memory
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_offset: int  # where the dataset starts after preamble and file meta
    size: int


class _Truncated(Exception):
    pass


_EXPLICIT = {"<": struct.Struct("<HH2sH"), ">": struct.Struct(">HH2sH")}  # tag, VR, short length
_IMPLICIT = {"<": struct.Struct("<HHL"), ">": struct.Struct(">HHL")}  # tag, length
_LONG = {"<": struct.Struct("<L"), ">": struct.Struct(">L")}


class _Walker:
    """Checks the structure of an encoded dataset held in memory (a bytes-like object). It runs once per
    received instance while the PACS waits for our answer, so each element header is one unpack."""

    def __init__(self, data, little_endian: bool):
        self.data = data
        self.end = len(data)
        self.prefix = "<" if little_endian else ">"
        self.last_tag = None  # of the top level: a file cut between two elements still looks whole
        self.identity: dict[str, str] = {}

    def _unpack(self, fmt: str, pos: int, size: int):
        if pos + size > self.end:
            raise _Truncated(f"the file ends at byte {self.end} inside an element header at byte {pos}")
        return struct.unpack_from(self.prefix + fmt, self.data, pos)

    def dataset(self, pos: int, stop: int, implicit: bool, depth: int = 0, until_item_end: bool = False) -> int:
        if depth > MAX_DEPTH:
            raise InvalidDicomFile(f"sequences nested more than {MAX_DEPTH} deep at byte {pos}")
        data, end = self.data, self.end
        header = (_IMPLICIT if implicit else _EXPLICIT)[self.prefix].unpack_from
        long_length = _LONG[self.prefix].unpack_from
        while pos < stop:
            if pos + 8 > end:  # every element header (and delimiter) is at least 8 bytes
                self._unpack("HHL", pos, 8)  # raises, naming where the data ends
            if implicit:
                group, element, length = header(data, pos)
                tag, vr = group << 16 | element, None
            else:
                group, element, vr, length = header(data, pos)
                tag = group << 16 | element
            if depth == 0:
                self.last_tag = tag
            if tag in (ITEM_END, SEQUENCE_END):
                (length,) = self._unpack("L", pos + 4, 4)
                if until_item_end and tag == ITEM_END:
                    return pos + 8
                raise InvalidDicomFile(f"unexpected delimiter ({group:04X},{element:04X}) at byte {pos}")
            if implicit:
                pos += 8
            elif vr in LONG_VRS:
                if pos + 12 > end:
                    self._unpack("L", pos + 8, 4)  # raises
                (length,) = long_length(data, pos + 8)
                pos += 12
            elif vr.isalpha() and vr.isupper():
                pos += 8
            else:
                raise InvalidDicomFile(f"element ({group:04X},{element:04X}) at byte {pos} has no valid VR")
            if depth == 0 and tag in IDENTITY_TAGS and length != UNDEFINED and pos + length <= stop:
                self.identity[IDENTITY_TAGS[tag]] = bytes(data[pos:pos + length]).decode(
                    "ascii", "replace").strip(" \x00")
            if length == UNDEFINED:
                # A UN of undefined length holds implicit little endian items (PS3.5 6.2.2).
                pos = self.items(pos, implicit or vr == b"UN", depth + 1)
            else:
                if pos + length > stop:
                    raise _Truncated(f"element ({group:04X},{element:04X}) needs {length} bytes from byte "
                                     f"{pos} but the data ends at byte {stop}")
                pos += length
        if until_item_end:
            raise _Truncated(f"an item is not closed before byte {stop}")
        return pos

    def items(self, pos: int, implicit: bool, depth: int) -> int:
        """Items of a sequence or fragments of encapsulated pixel data, up to the sequence delimiter."""
        while True:
            group, element = self._unpack("HH", pos, 4)
            (length,) = self._unpack("L", pos + 4, 4)
            tag = group << 16 | element
            pos += 8
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM:
                raise InvalidDicomFile(f"expected an item at byte {pos - 8}, found ({group:04X},{element:04X})")
            if length == UNDEFINED:
                pos = self.dataset(pos, self.end, implicit, depth, until_item_end=True)
            elif pos + length > self.end:
                raise _Truncated(f"an item needs {length} bytes from byte {pos} but the file ends at {self.end}")
            else:
                pos += length


@functools.lru_cache(maxsize=256)
def _uid(value: str) -> UID:
    """pydicom's UID, once per value: building one validates it, a cost per received instance otherwise."""
    return UID(value)


@functools.lru_cache(maxsize=256)
def _is_image_storage(sop_class_uid: str) -> bool:
    return "Image Storage" in UID(sop_class_uid).name


def check_dataset_bytes(data, transfer_syntax_uid: str, sop_class_uid: str = "") -> DatasetIdentity:
    """Raise InvalidDicomFile unless `data` (an encoded dataset, no file meta) is structurally complete.
    An image (by its SOP class) must also reach its pixel data: a cut between two elements is
    otherwise invisible. Byte positions in messages count from the start of the dataset. Returns the
    study, series and SOP instance UIDs the dataset holds, read on the way."""
    ts = _uid(transfer_syntax_uid)
    if ts.is_deflated:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(bytes(data))
        except zlib.error as exc:
            raise InvalidDicomFile(f"the deflated dataset is corrupt ({exc})") from None
        if not inflater.eof:
            raise InvalidDicomFile("the deflated dataset is truncated")
    walker = _Walker(data, ts.is_little_endian if ts.is_transfer_syntax else True)
    try:
        walker.dataset(0, len(data), ts.is_implicit_VR if ts.is_transfer_syntax else False)
    except _Truncated as exc:
        raise InvalidDicomFile(f"truncated: {exc}") from None
    if _is_image_storage(sop_class_uid) and (walker.last_tag or 0) < min(PIXEL_TAGS):
        last = walker.last_tag or 0
        raise InvalidDicomFile(f"truncated: an image without pixel data (it ends after element "
                               f"({last >> 16:04X},{last & 0xFFFF:04X}))")
    return DatasetIdentity(**walker.identity)


def header_end(data, transfer_syntax_uid: str) -> int | None:
    """Where the top-level pixel data element (or any element from (7FE0,0008) on) starts in `data`, the
    first part of an encoded dataset still arriving; None while the elements before it are not all in
    (or for a deflated dataset, which cannot be read in parts). What comes before is the header: the
    receiver checks it, and streams the rest (wire/streamed.py)."""
    ts = _uid(transfer_syntax_uid)
    if ts.is_deflated:
        return None
    little = ts.is_little_endian if ts.is_transfer_syntax else True
    implicit = ts.is_implicit_VR if ts.is_transfer_syntax else False
    walker = _Walker(data, little)
    prefix = walker.prefix
    header = (_IMPLICIT if implicit else _EXPLICIT)[prefix].unpack_from
    pos, end = 0, len(data)
    try:
        while pos + 12 <= end:
            if implicit:
                group, element, length = header(data, pos)
                value = pos + 8
            else:
                group, element, vr, length = header(data, pos)
                if vr in LONG_VRS:
                    (length,) = _LONG[prefix].unpack_from(data, pos + 8)
                    value = pos + 12
                else:
                    value = pos + 8
            if group << 16 | element >= FIRST_PIXEL_TAG:
                return pos
            if length == UNDEFINED:
                pos = walker.items(value, implicit or (not implicit and vr == b"UN"), 1)
            else:
                pos = value + length
    except _Truncated:
        return None
    return None


def _meta_element(tag: int, vr: str, value: str | bytes) -> bytes:
    """One element of the file meta (explicit VR little endian), text padded as its VR wants."""
    return element_bytes(tag, vr, value.encode("ascii") if isinstance(value, str) else value, False)


def part10_bytes(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, dataset: bytes,
                 source_ae: str = "") -> bytes:
    """A complete Part-10 file around an encoded dataset (PS3.10 7.1), encoded by hand: pydicom's
    writer costs ~1 ms per instance, a tenth of the time a received instance may take. Only the SOP
    Instance UID changes from one instance of a retrieval to the next; the rest is encoded once."""
    instance = _meta_element(0x00020003, "UI", sop_instance_uid)
    head, tail, group_length = _meta_parts(sop_class_uid, transfer_syntax_uid, source_ae)
    return b"".join((_PREAMBLE, _meta_element(0x00020000, "UL", struct.pack("<L", group_length + len(instance))),
                     head, instance, tail, dataset))


_PREAMBLE = b"\0" * 128 + b"DICM"


@functools.lru_cache(maxsize=256)
def _meta_parts(sop_class_uid: str, transfer_syntax_uid: str, source_ae: str) -> tuple[bytes, bytes, int]:
    """The file meta elements before and after the SOP Instance UID, and their length."""
    head = _meta_element(0x00020001, "OB", b"\x00\x01") + _meta_element(0x00020002, "UI", sop_class_uid)
    tail = (_meta_element(0x00020010, "UI", transfer_syntax_uid)
            + _meta_element(0x00020012, "UI", IMPLEMENTATION_CLASS_UID)
            + _meta_element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME))
    if source_ae:
        tail += _meta_element(0x00020016, "AE", source_ae[:16])
    return head, tail, len(head) + len(tail)


def source_name(source) -> str:
    """How messages name a source: its path, or "<bytes>" for data given in memory."""
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)


def read_meta(source: str | os.PathLike | bytes) -> DicomFileInfo:
    """What a Part-10 file holds, from its file meta information only (cheap: the dataset is not read)."""
    name = source_name(source)
    try:
        if name == "<bytes>":
            return _read_meta(name, io.BytesIO(bytes(source)), len(source))
        with open_regular(source) as fp:
            return _read_meta(name, fp, os.fstat(fp.fileno()).st_size)
    except OSError as exc:
        raise InvalidDicomFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    except InvalidDicomFile as exc:
        raise InvalidDicomFile(f"{name}: {exc.message}") from None


def read_checked(source: str | os.PathLike | bytes) -> tuple[DicomFileInfo, bytes]:
    """The whole file, once it is proven complete DICOM. Raises InvalidDicomFile naming the file."""
    name = source_name(source)
    try:
        data = bytes(source) if name == "<bytes>" else read_regular(source)
    except OSError as exc:
        raise InvalidDicomFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    try:
        info = _read_meta(name, io.BytesIO(data), len(data))
        check_dataset_bytes(memoryview(data)[info.dataset_offset:], info.transfer_syntax_uid, info.sop_class_uid)
    except InvalidDicomFile as exc:
        raise InvalidDicomFile(f"{name}: {exc.message}") from None
    return info, data


def read_complete(path: str | os.PathLike, info: DicomFileInfo) -> bytes:
    """The file's bytes, proven complete against the header read_meta gave (`info`), without parsing the
    file meta again. Raises InvalidDicomFile naming the file (also when it changed in between: another
    size, or a file meta that no longer names the instance)."""
    name = os.fspath(path)
    try:
        data = read_regular(path)
    except OSError as exc:
        raise InvalidDicomFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    prove_complete(name, data, info)
    return data


def prove_complete(name: str, data, info: DicomFileInfo) -> None:
    """InvalidDicomFile naming the file unless `data` (its bytes, or a mapping of it) is still the file
    read_meta described (`info`) and its dataset is structurally complete."""
    if (len(data) != info.size or data[128:132] != b"DICM"
            or info.sop_instance_uid.encode("ascii", "replace") not in data[132:info.dataset_offset]):
        raise InvalidDicomFile(f"{name}: changed while it was being sent; send it again")
    view = memoryview(data)
    dataset = view[info.dataset_offset:]
    try:
        check_dataset_bytes(dataset, info.transfer_syntax_uid, info.sop_class_uid)
    except InvalidDicomFile as exc:
        raise InvalidDicomFile(f"{name}: {exc.message}") from None
    finally:  # a mapping closes only once no view of it is left
        dataset.release()
        view.release()


def read_meta_open(fp, name: str) -> DicomFileInfo:
    """read_meta of a file already open (`fp`, a regular file's binary reader), named `name` in messages."""
    try:
        fp.seek(0)
        return _read_meta(name, fp, os.fstat(fp.fileno()).st_size)
    except OSError as exc:
        raise InvalidDicomFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    except InvalidDicomFile as exc:
        raise InvalidDicomFile(f"{name}: {exc.message}") from None


def inspect(source: str | os.PathLike | bytes) -> DicomFileInfo:
    """read_meta plus proof that the dataset is complete. Raises InvalidDicomFile naming the file."""
    return read_checked(source)[0]


def _read_meta(name: str, fp, size: int) -> DicomFileInfo:
    head = fp.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        raise InvalidDicomFile("not a DICOM file (no 'DICM' marker after the 128-byte preamble)")
    fp.seek(0)
    try:
        read_preamble(fp, False)
        meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                            stop_when=lambda tag, vr, length: tag.group != 2)
    except (InvalidDicomError, EOFError, ValueError, struct.error) as exc:
        raise InvalidDicomFile(f"unreadable file meta information ({exc})") from None
    offset = fp.tell()
    missing = [kw for kw in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
               if not str(meta.get(kw, "") or "").strip()]
    if missing and offset >= size:
        raise InvalidDicomFile("truncated inside the file meta information")
    if missing:
        raise InvalidDicomFile(f"file meta information lacks {', '.join(missing)}")
    if offset >= size:
        raise InvalidDicomFile("truncated: the file holds file meta information but no dataset")
    return DicomFileInfo(name=name, sop_class_uid=str(meta.MediaStorageSOPClassUID).strip(),
                         sop_instance_uid=str(meta.MediaStorageSOPInstanceUID).strip(),
                         transfer_syntax_uid=str(meta.TransferSyntaxUID).strip(), dataset_offset=offset, size=size)


def iter_files(paths) -> list[Path]:
    """Files named, plus every regular file under folders named (sorted, hidden ones left out)."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
        else:
            found.append(path)
    return found
