"""DICOM data set elements as bytes, little endian (implicit and explicit VR): parsed into `Element`s that
say where each element and its value lie in the buffer (nothing decoded, nested sequences as `Item`s), and
encoded again (`header`, `element_bytes`). The de-identification walk (deid_stream.py) and its reuse over a
series (deid_series.py) read and write instances through it, so an instance costs a walk over its element
headers rather than a pydicom decode and encode.

Big endian and deflated data sets (BIG_ENDIAN_OR_DEFLATED) are not read here: deidentify.py sends them
through pydicom. Malformed bytes raise StreamError, never a partial answer. The element facts (LONG_VRS,
UNDEFINED, the item and delimiter tags, MAX_DEPTH: element_facts.py) and `element_bytes` are the ones every
other reader and writer of elements in apps/dicom uses too (files.py, flat.py, split.py, query.py,
wire/streamed.py).
"""
from __future__ import annotations

import struct

from pydicom.datadict import dictionary_VR

from apps.dicom.element_facts import ITEM, ITEM_END, LONG_VRS, MAX_DEPTH, SEQUENCE_END, UNDEFINED

_VR_NAMES: dict[bytes, str] = {}  # the VR as written -> its str, decoded once
_pack_tag = struct.Struct("<HH").pack
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_explicit_hdr = struct.Struct("<HH2sH").unpack_from
_implicit_hdr = struct.Struct("<HHI").unpack_from
_unpack_hdr = struct.Struct("<HH").unpack_from
_u16 = struct.Struct("<H").unpack_from
_u32 = struct.Struct("<I").unpack_from


class StreamError(ValueError):
    """The bytes are not a well-formed little endian data set."""


class Element:
    """One encoded element: `vr` as written (UN stays UN), `kind` the VR its tag has in the dictionary when
    the file says UN or nothing (implicit VR), which is what the profile's rules look at."""

    __slots__ = ("tag", "vr", "kind", "start", "value_start", "length", "end", "items", "undefined",
                 "implicit_items")

    def __init__(self, tag, vr, start, value_start, length, end, items=None, undefined=False,
                 implicit_items=False, kind=None):
        self.tag, self.vr, self.start, self.value_start = tag, vr, start, value_start
        self.kind = kind or vr
        self.length, self.end, self.items, self.undefined = length, end, items, undefined
        self.implicit_items = implicit_items


class Item:
    """One item of a sequence: its elements, and whether it ends with an item delimiter (undefined length)."""

    __slots__ = ("elements", "undefined")

    def __init__(self, elements, undefined):
        self.elements, self.undefined = elements, undefined


def _vr_of(tag: int) -> str:
    if (tag >> 16) & 1:
        return "UN"
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def _dropped(group: int, elem: int, skip_private: bool) -> bool:
    """Elements the de-identification removes whatever their value, so parse() makes no Element of them:
    group lengths (but the file meta's), curves and overlays, and private elements with `skip_private`."""
    return (skip_private and group & 1) or elem == 0 and group > 0x0002 \
        or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF


def parse(buf: bytes, pos: int, end: int | None, implicit: bool, in_item: bool = False,
          skip_private: bool = False, depth: int = 0) -> tuple[list[Element], int]:
    """The elements from `pos` to `end` (or to the item delimiter when `in_item` and `end` is None;
    with `end` at `pos + 1`, the one element at `pos`). Group lengths, curves and overlays are stepped over, and private elements
    too with `skip_private` (see _dropped)."""
    if depth > MAX_DEPTH:
        raise StreamError(f"sequences nested more than {MAX_DEPTH} deep")
    out: list[Element] = []
    size = len(buf)
    limit = size if end is None else end
    while pos < limit:
        if pos + 8 > size:
            raise StreamError(f"truncated element header at byte {pos}")
        kind = None
        if implicit:
            group, elem, length = _implicit_hdr(buf, pos)
            tag = group << 16 | elem
            vr = _vr_of(tag)
            value_start = pos + 8
            if length == UNDEFINED and tag != 0x7FE00010:
                vr = "SQ"
        else:
            group, elem, vr_bytes, length = _explicit_hdr(buf, pos)
            tag = group << 16 | elem
            vr = _VR_NAMES.get(vr_bytes)
            if vr is None:
                vr = _VR_NAMES.setdefault(vr_bytes, vr_bytes.decode("ascii", "replace"))
            if vr_bytes in LONG_VRS:
                if pos + 12 > size:
                    raise StreamError(f"truncated element header at byte {pos}")
                length = _u32(buf, pos + 8)[0]
                value_start = pos + 12
            else:
                value_start = pos + 8
            if vr == "UN":
                kind = _vr_of(tag)
            elif group == 0xFFFE:
                length = _u32(buf, pos + 4)[0]
        if tag == ITEM_END:
            if not in_item:
                raise StreamError(f"item delimiter outside an item at byte {pos}")
            return out, pos + 8
        if length == UNDEFINED:
            if vr == "SQ" or vr == "UN":
                inner_implicit = implicit or vr == "UN"  # a UN sequence holds implicit VR items
                items, after = _parse_items(buf, value_start, None, inner_implicit, skip_private, depth)
                if not _dropped(group, elem, skip_private):
                    out.append(Element(tag, vr, pos, value_start, length, after, items, True, inner_implicit,
                                       kind))
            else:  # encapsulated pixel data: fragments up to the sequence delimiter, kept as they are
                after = _skip_fragments(buf, value_start)
                out.append(Element(tag, vr, pos, value_start, length, after))
            pos = after
            continue
        value_end = value_start + length
        if value_end > size:
            raise StreamError(f"element ({group:04X},{elem:04X}) runs past the end of the file")
        if _dropped(group, elem, skip_private):
            pass
        elif vr == "SQ" or kind == "SQ":
            inner_implicit = implicit or kind == "SQ"
            items, _ = _parse_items(buf, value_start, value_end, inner_implicit, skip_private, depth)
            out.append(Element(tag, vr, pos, value_start, length, value_end, items, False, inner_implicit,
                               kind))
        else:
            out.append(Element(tag, vr, pos, value_start, length, value_end, kind=kind))
        pos = value_end
    if in_item and end is None:
        raise StreamError("an item without its delimiter")
    return out, pos


def _parse_items(buf: bytes, pos: int, end: int | None, implicit: bool,
                 skip_private: bool, depth: int) -> tuple[list[Item], int]:
    items = []
    size = len(buf)
    while end is None or pos < end:
        if pos + 8 > size:
            raise StreamError(f"truncated sequence at byte {pos}")
        group, elem, length = _implicit_hdr(buf, pos)
        tag = group << 16 | elem
        if tag == SEQUENCE_END:
            return items, pos + 8
        if tag != ITEM:
            raise StreamError(f"expected an item at byte {pos}")
        if length == UNDEFINED:
            elements, pos = parse(buf, pos + 8, None, implicit, True, skip_private, depth + 1)
            items.append(Item(elements, True))
        else:
            elements, _ = parse(buf, pos + 8, pos + 8 + length, implicit, False, skip_private, depth + 1)
            items.append(Item(elements, False))
            pos = pos + 8 + length
    return items, pos


def _skip_fragments(buf: bytes, pos: int) -> int:
    size = len(buf)
    while pos + 8 <= size:
        group, elem = _unpack_hdr(buf, pos)
        length = _u32(buf, pos + 4)[0]
        if (group, elem) == (0xFFFE, 0xE0DD):
            return pos + 8
        if (group, elem) != (0xFFFE, 0xE000) or length == UNDEFINED:
            raise StreamError(f"broken encapsulated pixel data at byte {pos}")
        pos += 8 + length
    raise StreamError("encapsulated pixel data without its sequence delimiter")


def read_meta(buf: bytes) -> tuple[list[Element], int, str]:
    """The file meta elements, where the data set starts, and its transfer syntax."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise StreamError("no Part-10 preamble")
    group_length = None
    pos = 132
    elements = []
    while pos + 8 <= len(buf) and _unpack_hdr(buf, pos)[0] == 0x0002:
        el_list, _ = parse(buf, pos, pos + 1, False)
        el = el_list[0]
        if el.tag == 0x00020000:
            group_length = _u32(buf, el.value_start)[0]
        elements.append(el)
        pos = el.end
        if group_length is not None and pos >= 132 + 12 + group_length:
            break
    syntax = next((text(buf, e) for e in elements if e.tag == 0x00020010), "")
    if not syntax:
        raise StreamError("no transfer syntax in the file meta")
    return elements, pos, syntax


def skip_dropped(buf: bytes, pos: int, implicit: bool, skip_private: bool, below: int = 0xFFFFFFFF) -> int:
    """Where the elements from `pos` that parse() drops whatever they hold (see _dropped), with tags below
    `below`, end."""
    size = len(buf)
    while pos + 8 <= size:
        group, elem = _unpack_hdr(buf, pos)
        if not _dropped(group, elem, skip_private) or group == 0xFFFE or group << 16 | elem >= below:
            break
        _, pos = parse(buf, pos, pos + 1, implicit, skip_private=skip_private)
    return pos


def meta_elements(buf: bytes) -> list[tuple[int, bytes]] | None:
    """The (tag, encoded element) pairs of a Part-10 file's meta that is all of `buf`, as read_meta finds
    them; None when `buf` is anything else (no preamble, another group, a group length ending elsewhere)."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        return None
    pos, size, found, boundary = 132, len(buf), [], None
    while pos < size:
        if pos + 8 > size or _unpack_hdr(buf, pos)[0] != 0x0002:
            return None
        end = defined_end(buf, pos, False)
        if end is None:
            return None
        tag = 0x00020000 | _unpack_hdr(buf, pos)[1]
        if tag == 0x00020000:
            boundary = 132 + 12 + _u32(buf, pos + 8)[0]
        found.append((tag, buf[pos:end]))
        pos = end
        if boundary is not None and size > pos >= boundary:
            return None
    return found


def defined_end(buf: bytes, pos: int, implicit: bool) -> int | None:
    """Where the element at `pos` ends; None when its length is undefined or runs past `buf`."""
    try:
        if implicit:
            length, start = _u32(buf, pos + 4)[0], pos + 8
        elif buf[pos + 4:pos + 6] in LONG_VRS:
            length, start = _u32(buf, pos + 8)[0], pos + 12
        else:
            length, start = _u16(buf, pos + 6)[0], pos + 8
    except struct.error:
        return None
    return start + length if length != UNDEFINED and start + length <= len(buf) else None


def tag_at(buf: bytes, pos: int) -> int:
    """The tag of the element at `pos`."""
    group, elem = _unpack_hdr(buf, pos)
    return group << 16 | elem


def text(buf: bytes, el: Element) -> str:
    """An element's value as Latin-1 text without its padding (UIDs, codes, dates: ASCII in practice)."""
    return buf[el.value_start:el.value_start + el.length].decode("latin-1").rstrip("\0 ")


def header(tag: int, vr: str, length: int, implicit: bool) -> bytes:
    """An element's encoded tag, VR (explicit only) and length, for a value of `length` bytes."""
    head = _pack_tag(tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", length)
    vr_bytes = vr.encode("ascii")
    if vr_bytes in LONG_VRS:
        return head + vr_bytes + b"\0\0" + struct.pack("<I", length)
    if length > 0xFFFF:
        raise StreamError(f"a {vr} value of {length} bytes does not fit its element")
    return head + vr_bytes + struct.pack("<H", length)


def padded(value: bytes, vr: str) -> bytes:
    """`value` made even in length as PS3.5 6.2 pads a `vr`: a NUL after a UID, else a space."""
    if len(value) % 2:
        return value + (b"\0" if vr == "UI" else b" ")
    return value


def item_header(length: int) -> bytes:
    """A sequence item's tag and length (UNDEFINED: the item ends with ITEM_END_BYTES), alike in both VR
    forms."""
    return _ITEM_TAG + struct.pack("<I", length)


def element_bytes(tag: int, vr: str, value: bytes, implicit: bool) -> bytes:
    """One encoded element of `value`, padded."""
    value = padded(value, vr)
    return header(tag, vr, len(value), implicit) + value
