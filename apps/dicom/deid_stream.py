"""The de-identification of a Part-10 file as bytes: the profile's rules applied while walking the encoded
elements, copying every element the profile keeps as the bytes it was, so an instance costs a walk over
its headers rather than a pydicom decode and encode (about ten times faster; see deidentify.py).

Little endian transfer syntaxes only (implicit and explicit VR, native or encapsulated pixel data);
`deidentify.deidentify_bytes` sends the others (big endian, deflated) through pydicom's dataset instead.
The tests run both ways on the same files and compare.
"""
from __future__ import annotations

import copy
import datetime as dt
import struct

from pydicom.charset import convert_encodings, decode_bytes, encode_string
from pydicom.datadict import dictionary_VR

LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
NUMERIC_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "UV": 8, "SV": 8}
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
NOT_STREAMED = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflated
_pack_tag = struct.Struct("<HH").pack
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


_VR_NAMES: dict[bytes, str] = {}
_explicit_hdr = struct.Struct("<HH2sH").unpack_from
_implicit_hdr = struct.Struct("<HHI").unpack_from


def _dropped(group: int, elem: int, skip_private: bool) -> bool:
    """Elements the walk removes whatever their value: not worth an Element."""
    return (skip_private and group & 1) or elem == 0 and group > 0x0002 \
        or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF


MAX_DEPTH = 32  # sequences within sequences; real files stay within a handful


def parse(buf: bytes, pos: int, end: int | None, implicit: bool, in_item: bool = False,
          skip_private: bool = False, depth: int = 0) -> tuple[list[Element], int]:
    """The elements from `pos` to `end` (or to the item delimiter when `in_item` and `end` is None).
    With `skip_private`, private elements, group lengths, curves and overlays are stepped over."""
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
        if tag == SEQ_END:
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


def header(tag: int, vr: str, length: int, implicit: bool) -> bytes:
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
    if len(value) % 2:
        return value + (b"\0" if vr == "UI" else b" ")
    return value


def text(buf: bytes, el: Element) -> str:
    return buf[el.value_start:el.value_start + el.length].decode("latin-1").rstrip("\0 ")


def shift_dates(raw: str, vr: str, days: int) -> str | None:
    """Each date (DA) or the date part of each date-time (DT) moved by `days`; None when one cannot be."""
    out = []
    for value in raw.split("\\"):
        value = value.strip()
        if not value:
            out.append("")
            continue
        try:
            day = dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8])) + dt.timedelta(days=days)
        except ValueError:
            return None
        if vr == "DA" and len(value) != 8:
            return None
        out.append(day.strftime("%Y%m%d") + (value[8:] if vr == "DT" else ""))
    return "\\".join(out)


def decode_text(raw: bytes, vr: str, encodings: list[str]) -> str:
    delims = {0x5C, 0x5E, 0x3D} if vr == "PN" else ({0x5C} if vr in ("SH", "LO", "UC", "CS") else set())
    return decode_bytes(raw, encodings, delims).rstrip("\0 ")


def encode_text(value: str, encodings: list[str]) -> bytes:
    return encode_string(value, encodings)


def encodings_of(raw: str) -> list[str]:
    terms = [t.strip() for t in raw.split("\\")] if raw else ["ISO_IR 6"]
    if len(terms) > 1 and not terms[0]:
        terms[0] = "ISO_IR 6"
    return convert_encodings(terms or ["ISO_IR 6"])


DUMMY_BYTES = {"DA": b"19000101", "DT": b"19000101000000", "TM": b"000000", "AS": b"000D", "IS": b"0 ",
               "DS": b"0 ", "UR": b""}
TEXT_VRS = frozenset({"PN", "SH", "LO", "ST", "LT", "UT", "UC", "CS"})
DUMMY_TEXT = b"ANONYMIZED"


_SPECIAL = frozenset({0x00100010, 0x00100020})


def action_is_keep(actions: dict, el: Element) -> bool:
    """An element copied as it is: a listed K, or unlisted and neither a sequence nor a date, and public."""
    tag = el.tag
    if tag >> 16 & 1 or tag in _SPECIAL or el.items is not None:
        return False
    action = actions.get(tag)
    return action == "K" or (action is None and el.kind not in ("DA", "DT") and tag & 0xFFFF != 0
                             and not (0x5000 <= tag >> 16 <= 0x50FF or 0x6000 <= tag >> 16 <= 0x60FF))


def copied_as_is(walk: "StreamWalk", el: Element) -> bool:
    """Whether what `walk` makes of `el` is its own bytes whatever its value (and nothing else when its value
    is all that changes): kept, or a time "shifted" (whole days move), or a non-text descriptor "cleaned"."""
    if action_is_keep(walk.actions, el):
        return True
    action = walk.actions.get(el.tag)
    if el.items is not None or el.tag >> 16 & 1 or el.tag in _SPECIAL:
        return False
    return action == "S" and el.kind not in ("DA", "DT") or action == "C" and el.kind not in TEXT_VRS


class StreamWalk:
    """The profile applied to parsed elements; `emit` returns the pieces of the new encoding.

    `actions` is the recipe's resolved table (tag → X Z D U K S C Q), `uid` maps a UID, `pseudonym` replaces
    PatientID and PatientName, `days` shifts dates (None: dates the table does not list are emptied),
    `scrub` (a compiled pattern or None) cleans descriptors, `safe_private(group, creator, byte)` keeps a private
    element, `encodings` are the data set's character sets."""

    def __init__(self, buf, actions, uid, pseudonym: str, days, scrub, safe_private, encodings):
        self.buf, self.actions, self.uid, self.days = buf, actions, uid, days
        self.pseudonym = pseudonym.encode("ascii")
        self.scrub, self.safe_private, self.encodings = scrub, safe_private, encodings

    def on(self, buf) -> "StreamWalk":
        """The same walk over another instance's bytes (deid_series: the next instance of a series)."""
        walk = copy.copy(self)
        walk.buf = buf
        return walk

    def emit(self, elements: list[Element], implicit: bool, inserts: dict[int, bytes] | None = None,
             marks: list[int] | None = None) -> list:
        """The pieces of the new encoding. With `marks`, two indexes are appended to it for each element,
        where the inserts placed before it start and where its own pieces start, then where the inserts
        after the last element start."""
        buf, actions = self.buf, self.actions
        out: list = []
        pending = sorted(inserts.items()) if inserts else []
        creators: dict[int, str] = {}
        for el in elements:
            if marks is not None:
                marks.append(len(out))
            tag = el.tag
            while pending and pending[0][0] <= tag:
                out.append(pending.pop(0)[1])
            if marks is not None:
                marks.append(len(out))
            if inserts and tag in inserts:
                continue
            if action_is_keep(actions, el):
                # kept as it was: one slice, merged with the previous one when they touch (not when each
                # element's output is asked for)
                if marks is None and out and type(out[-1]) is tuple and out[-1][1] == el.start:
                    out[-1] = (out[-1][0], el.end)
                else:
                    out.append((el.start, el.end))
                continue
            group = tag >> 16
            if group & 1:
                if self._keep_private(el, creators):
                    out.append(buf[el.start:el.end])
                continue
            if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF or tag & 0xFFFF == 0:
                continue  # curves, overlays, and group lengths (no longer true once values change)
            if tag == 0x00100010 or tag == 0x00100020:
                out.append(self._value(el, padded(self.pseudonym, el.kind), implicit))
                continue
            action = actions.get(tag)
            if action is None or action == "K":
                if el.items is not None:
                    out += self._sequence(el, implicit)
                elif action is None and el.kind in ("DA", "DT"):
                    out.append(self._apply(el, "S" if self.days is not None else "Z", implicit))
                else:
                    out.append(buf[el.start:el.end])
                continue
            if action != "X":
                piece = self._apply(el, action, implicit)
                if isinstance(piece, list):
                    out += piece
                else:
                    out.append(piece)
        if marks is not None:
            marks.append(len(out))
        out += [piece for _, piece in pending]
        return [buf[p[0]:p[1]] if type(p) is tuple else p for p in out]

    def _keep_private(self, el: Element, creators: dict[int, str]) -> bool:
        element = el.tag & 0xFFFF
        if element < 0x0100:
            if element >= 0x10:
                creators[el.tag] = text(self.buf, el)
                return self.safe_private(el.tag >> 16, creators[el.tag], None)
            return False
        creator = creators.get((el.tag & 0xFFFF0000) | (element >> 8))
        return creator is not None and el.items is None and self.safe_private(el.tag >> 16, creator,
                                                                                element & 0xFF)

    def _value(self, el: Element, value: bytes, implicit: bool) -> bytes:
        return header(el.tag, el.vr, len(value), implicit) + value

    def _sequence(self, el: Element, implicit: bool, empty: bool = False) -> list:
        parts: list = []
        if not empty:
            for item in el.items:
                inner = b"".join(self.emit(item.elements, el.implicit_items))
                if item.undefined:
                    parts += [b"\xfe\xff\x00\xe0\xff\xff\xff\xff", inner, b"\xfe\xff\x0d\xe0\0\0\0\0"]
                else:
                    parts += [b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)), inner]
        if el.undefined:
            return [header(el.tag, el.vr, UNDEFINED, implicit), *parts, b"\xfe\xff\xdd\xe0\0\0\0\0"]
        return [header(el.tag, el.vr, sum(len(p) for p in parts), implicit), *parts]

    def _apply(self, el: Element, action: str, implicit: bool):
        vr = el.kind
        if el.items is not None:
            return self._sequence(el, implicit, empty=action == "Z")
        if action == "Z" or action == "Q":  # Q (X/Z/U*) on something that is no sequence: emptied
            return header(el.tag, el.vr, 0, implicit)
        if action == "U" or (action == "D" and vr == "UI"):
            values = [v.strip("\0 ") for v in text(self.buf, el).split("\\")]
            new = "\\".join(self.uid(v) if v else "" for v in values)
            return self._value(el, padded(new.encode("ascii"), "UI"), implicit)
        if action == "S":
            if vr not in ("DA", "DT"):
                return self.buf[el.start:el.end]  # times and ages: whole days moved, they stay
            shifted = shift_dates(text(self.buf, el), vr, self.days or 0) if self.days is not None else None
            return self._value(el, padded((shifted or "").encode("ascii"), vr), implicit)
        if action == "C":
            if vr in TEXT_VRS and self.scrub is not None and el.length:
                raw = self.buf[el.value_start:el.value_start + el.length]
                value = self.scrub.sub("", decode_text(raw, vr, self.encodings)).strip()
                return self._value(el, padded(encode_text(value, self.encodings), vr), implicit)
            return self.buf[el.start:el.end]
        # D: a dummy of the element's kind
        if vr in DUMMY_BYTES:
            return self._value(el, DUMMY_BYTES[vr], implicit)
        if vr in TEXT_VRS or vr == "AE":
            return self._value(el, DUMMY_TEXT, implicit)
        if vr in NUMERIC_SIZES:
            return self._value(el, b"\0" * NUMERIC_SIZES[vr], implicit)
        return header(el.tag, el.vr, 0, implicit)


def element_bytes(tag: int, vr: str, value: bytes, implicit: bool) -> bytes:
    value = padded(value, vr)
    return header(tag, vr, len(value), implicit) + value


def code_sequence(codes: list[tuple[str, str]], implicit: bool) -> bytes:
    """(0012,0064) De-identification Method Code Sequence with DCM codes, defined lengths."""
    items = []
    for value, meaning in codes:
        inner = (element_bytes(0x00080100, "SH", value.encode(), implicit)
                 + element_bytes(0x00080102, "SH", b"DCM", implicit)
                 + element_bytes(0x00080104, "LO", meaning.encode(), implicit))
        items.append(b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)) + inner)
    body = b"".join(items)
    return header(0x00120064, "SQ", len(body), implicit) + body


def read_meta(buf: bytes) -> tuple[list[Element], int, str]:
    """The file meta elements, where the data set starts, and its transfer syntax."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise StreamError("no Part-10 preamble")
    group_length = None
    pos = 132
    elements = []
    while pos + 8 <= len(buf) and _unpack_hdr(buf, pos)[0] == 0x0002:
        el_list, _ = parse(buf, pos, _element_end(buf, pos), False)
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


def _element_end(buf: bytes, pos: int) -> int:
    vr = buf[pos + 4:pos + 6]
    if vr in LONG_VRS:
        return pos + 12 + _u32(buf, pos + 8)[0]
    return pos + 8 + _u16(buf, pos + 6)[0]


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
        end = _element_end(buf, pos)
        if end > size:
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
    group, elem = _unpack_hdr(buf, pos)
    return group << 16 | elem
