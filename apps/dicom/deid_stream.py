"""The de-identification of a Part-10 file as bytes: the profile's rules applied while walking the encoded
elements (StreamWalk), copying every element the profile keeps as the bytes it was, so an instance costs a
walk over its headers rather than a pydicom decode and encode (about ten times faster; see deidentify.py).
Here are the walk and the rules for values (dates shifted, text decoded and cleaned, dummies); the
elements themselves are parsed and encoded by element_codec.py.

Little endian transfer syntaxes only (implicit and explicit VR, native or encapsulated pixel data);
`deidentify.deidentify_bytes` sends the others (big endian, deflated) through pydicom's dataset instead.
The tests run both ways on the same files and compare.
"""
from __future__ import annotations

import copy
import datetime as dt

from pydicom.charset import convert_encodings, decode_bytes, encode_string

from apps.dicom.element_codec import Element, header, item_header, padded, text
from apps.dicom.element_facts import ITEM_END_BYTES, NUMERIC_SIZES, SEQUENCE_END_BYTES, UNDEFINED


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
_UNDEFINED_ITEM = item_header(UNDEFINED)


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
                    parts += [_UNDEFINED_ITEM, inner, ITEM_END_BYTES]
                else:
                    parts += [item_header(len(inner)), inner]
        if el.undefined:
            return [header(el.tag, el.vr, UNDEFINED, implicit), *parts, SEQUENCE_END_BYTES]
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
