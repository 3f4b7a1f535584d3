"""The top-level elements of a common DICOM file, found with one struct unpack each instead of a pydicom
dataset: little-endian (explicit or implicit VR), every element up to the last one asked for with a
defined length. The catalog reads its identifiers this way (catalog_entry.py) and the import renders
its images this way (flat_image.py), about ten times faster than pydicom on the files PACS send. Any
other file raises Slow and goes pydicom's way, which decides what it means and why it is refused."""
from __future__ import annotations

import struct

from apps.dicom.element_facts import BIG_ENDIAN_OR_DEFLATED, IMPLICIT_LE, LONG_VRS, UNDEFINED

_IMPLICIT_HEADER = struct.Struct("<HHL").unpack_from
_EXPLICIT_HEADER = struct.Struct("<HH2sH").unpack_from
_LONG = struct.Struct("<L").unpack_from


class Slow(Exception):
    """This reader does not handle the file: pydicom reads it."""


def elements(data: bytes, size: int, wanted, last_tag: int) -> tuple[str, dict[int, tuple[bytes | None, int, int]]]:
    """(transfer syntax, {tag: (VR or None when implicit, offset of the value, its length)}) of the `wanted`
    tags among the top-level elements up to `last_tag`. `data` is the file's first bytes (`size` the whole
    file's): running out of them before `last_tag` and before the file's end raises Slow, as does anything
    but little-endian elements of defined length."""
    if data[128:132] != b"DICM":
        raise Slow
    pos, syntax, end = 132, "", len(data)
    while pos + 8 <= end and data[pos:pos + 2] == b"\x02\x00":
        element, vr = struct.unpack_from("<H2s", data, pos + 2)
        if vr in LONG_VRS:
            (length,) = _LONG(data, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8
        if element == 0x0010:
            syntax = data[pos:pos + length].decode("ascii", "replace").strip(" \x00")
        pos += length
    if not syntax or syntax in BIG_ENDIAN_OR_DEFLATED:
        raise Slow  # (a compressed syntax's dataset is explicit VR little endian: read here)
    implicit, found = syntax == IMPLICIT_LE, {}
    while True:
        if pos + 8 > end:
            if pos >= size:
                break
            raise Slow
        if implicit:
            group, element, length = _IMPLICIT_HEADER(data, pos)
            vr, header = None, 8
        else:
            group, element, vr, length = _EXPLICIT_HEADER(data, pos)
            header = 8
            if vr in LONG_VRS:
                (length,) = _LONG(data, pos + 8)
                header = 12
        tag = group << 16 | element
        if tag > last_tag:
            break
        pos += header
        if length == UNDEFINED or pos + length > end:
            raise Slow
        if tag in wanted:
            found[tag] = (vr, pos, length)
        pos += length
    return syntax, found
