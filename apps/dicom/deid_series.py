"""The walk over one instance's header reused for the next instance of its series.

A series' instances share their header but for a few values (SOP Instance UID, Instance Number, the
slice's position, its acquisition time...), so what the profile made of each element of one instance holds
for the next wherever the bytes are the same. A Template keeps, for the last instance walked, its header as
runs of elements: a run of elements that stayed the same between instances is compared as one byte string
(one memcmp) and its output copied; an element known to change ("volatile": public, no sequence, nothing
the rest of the walk reads) is walked alone when its bytes changed; a gap of elements the profile drops
whatever they hold (private elements, group lengths) is stepped over element by element when it changed.
Any other difference (another patient, character set or SOP class, an element more or less, a sequence
that changed) takes the whole walk (deidentify_bytes), which becomes the template, with the elements that
differed from the last one as its volatile elements.

Why this is the same output as the whole walk: parsing is driven by the element headers alone, so bytes
that differ only inside the values of non-sequence elements give the same elements at the same places; an
element's output depends on its own bytes and on the instance's patient, character sets and private
creators, and a change to any of those is never taken as volatile. tests/projects/test_deid_series.py
compares both byte for byte.
"""
from __future__ import annotations

from apps.dicom import element_codec as codec
from apps.dicom.deid_rules import PATIENT_ID, PATIENT_NAME, SOP_CLASS, SOP_INSTANCE
from apps.dicom.deid_stream import copied_as_is
from apps.dicom.deidentify import Walked
from apps.dicom.files import FIRST_PIXEL_TAG

# Elements the walk of the others depends on (character sets, the kind and burned-in checks, the
# patient, what descriptors are cleaned of) and the ones the profile inserts: a change takes the whole walk.
ANCHORS = frozenset({0x00080005, SOP_CLASS, 0x00280301, PATIENT_ID, PATIENT_NAME, 0x00080050, 0x00100030,
                     0x00101000, 0x00120062, 0x00120063, 0x00120064, 0x00280303})


def may_vary(el: codec.Element) -> bool:
    return el.items is None and not (el.tag >> 16) & 1 and el.tag not in ANCHORS


class Template:
    """The last walked instance's header as segments: (raw bytes, their output, the element's tag for a
    volatile element, GAP for dropped elements, None for a run; `seen`: for a volatile element the profile
    keeps as it is, the bytes its encoding starts with (tag, and VR when explicit), for another volatile
    element the outputs of the encodings it had (a series' values recur when the PACS sends two series
    in turns), else None)."""

    SEEN = 16  # encodings of one volatile element remembered

    GAP = -1

    def __init__(self, walked: Walked, head: bytes, syntax: str, volatile: frozenset):
        self.syntax = syntax
        self.walk, self.implicit, self.skip_private = walked.walk, walked.implicit, walked.skip_private
        self.tail, self.sop, self.volatile = walked.tail, walked.sop, volatile
        self.length = len(head)
        self.raw = {}  # tag -> its encoded element, to tell which changed in the next whole walk
        segments, run_raw, run_out, pos = [], [], [], 0

        def flush():
            if run_raw:
                segments.append((b"".join(run_raw), b"".join(run_out), None, None))
                run_raw.clear(), run_out.clear()

        for el, (inserted, piece) in zip(walked.elements, walked.pieces):
            begin, end = el.start - walked.start, el.end - walked.start
            raw = head[begin:end]
            self.raw[el.tag] = raw
            if begin > pos:
                flush()
                segments.append((head[pos:begin], b"", self.GAP, None))
            if el.tag in volatile or el.tag == SOP_INSTANCE:
                flush()
                if inserted:  # what the profile adds before it: no bytes of the instance, always there
                    segments.append((b"", inserted, None, None))
                if copied_as_is(self.walk, el) and not el.undefined:
                    seen = raw[:4 if self.implicit else 6]
                else:
                    seen = {raw: piece} if el.tag != SOP_INSTANCE else None  # (a new SOP UID each time)
                segments.append((raw, piece, el.tag, seen))
            else:
                run_raw.append(raw)
                run_out += [inserted, piece]
            pos = end
        flush()
        if pos < len(head):
            segments.append((head[pos:], b"", self.GAP, None))
        self.segments = segments

    def apply(self, data: bytes) -> tuple[list, str, int] | None:
        """What the profile makes of the header at the start of `data` (a data set's first bytes: its
        elements before the pixel data, and some after), its new SOP Instance UID, and where the header
        ends (files.header_end's answer: the first element from (7FE0,0008) on starts there); None when the
        header differs from the template's in more than volatile values and dropped elements."""
        out, pos, sop, walk = [], 0, self.sop, None
        for raw, piece, tag, seen in self.segments:
            if data.startswith(raw, pos):
                out.append(piece)
                pos += len(raw)
                continue
            if tag is None:
                return None
            if type(seen) is bytes:
                if data.startswith(seen, pos):  # its bytes are its output
                    end = codec.defined_end(data, pos, self.implicit)
                    if end is None:
                        return None
                    out.append(data[pos:end])
                    pos = end
                    continue
            elif seen is not None:
                end = codec.defined_end(data, pos, self.implicit)
                found = seen.get(data[pos:end]) if end is not None else None
                if found is not None:  # these very bytes were walked before: the same output
                    out.append(found)
                    pos = end
                    continue
            try:
                if tag == self.GAP:
                    pos = codec.skip_dropped(data, pos, self.implicit, self.skip_private, below=FIRST_PIXEL_TAG)
                    continue
                elements, after = codec.parse(data, pos, pos + 1, self.implicit, skip_private=self.skip_private)
            except codec.StreamError:  # (or it runs past what `data` holds of the data set)
                return None
            if len(elements) != 1 or elements[0].tag != tag or not may_vary(elements[0]) and tag != SOP_INSTANCE:
                return None
            walk = walk or self.walk.on(data)
            pieces = walk.emit(elements, self.implicit)
            out += pieces
            if seen is not None and type(seen) is dict:
                if len(seen) >= self.SEEN:
                    seen.clear()
                seen[data[pos:after]] = b"".join(pieces)
            if tag == SOP_INSTANCE:
                value = codec.text(data, elements[0])
                sop = walk.uid(value) if value else ""
            pos = after
        if pos + 4 > len(data) or codec.tag_at(data, pos) < FIRST_PIXEL_TAG:
            return None  # more elements than the template's, or a header longer than `data`
        out.append(self.tail)
        return out, sop, pos

    def changed(self, walked: Walked, head: bytes) -> frozenset:
        """The volatile elements for a template of `walked` made after this one: this one's, and those
        that differ between the two and may vary."""
        found = set(self.volatile)
        for el in walked.elements:
            if may_vary(el) and self.raw.get(el.tag) != head[el.start - walked.start:el.end - walked.start]:
                found.add(el.tag)
        return frozenset(found)


def walked(meta: bytes, head: bytes, syntax: str, previous: Template | None, whole) -> tuple[bytes, Template | None]:
    """The file meta `meta` and the header `head` (the data set's elements before its pixel data, in
    transfer syntax `syntax`) of one instance, de-identified by `whole(meta + head, walked)`
    (deidentify_bytes), and the template it makes for the series' next instance (`previous`: the last one)."""
    done: list[Walked] = []
    data = whole(meta + head, done)
    if not done or done[0].start != len(meta) or head[:2] == b"\x02\x00":
        return data, None
    volatile = previous.changed(done[0], head) if previous is not None else frozenset()
    return data, Template(done[0], head, syntax, volatile)
