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

from apps.dicom import deid_stream as stream
from apps.dicom.deid_rules import PATIENT_ID, PATIENT_NAME, SOP_CLASS, SOP_INSTANCE
from apps.dicom.deidentify import Walked, file_meta

# Elements the walk of the others depends on (character sets, the kind and burned-in checks, the
# patient, what descriptors are cleaned of) and the ones the profile inserts: a change takes the whole walk.
ANCHORS = frozenset({0x00080005, SOP_CLASS, 0x00280301, PATIENT_ID, PATIENT_NAME, 0x00080050, 0x00100030,
                     0x00101000, 0x00120062, 0x00120063, 0x00120064, 0x00280303})


def may_vary(el: stream.Element) -> bool:
    return el.items is None and not (el.tag >> 16) & 1 and el.tag not in ANCHORS


class Template:
    """The last walked instance's header as segments (raw bytes, their output, the element's tag for a
    volatile element, GAP for dropped elements, None for a run)."""

    GAP = -1

    def __init__(self, walked: Walked, head: bytes, syntax: str, volatile: frozenset):
        self.syntax = syntax
        self.walk, self.implicit, self.skip_private = walked.walk, walked.implicit, walked.skip_private
        self.tail, self.sop, self.volatile = walked.tail, walked.sop, volatile
        self.raw = {}  # tag -> its encoded element, to tell which changed in the next whole walk
        segments, run_raw, run_out, pos = [], [], [], 0

        def flush():
            if run_raw:
                segments.append((b"".join(run_raw), b"".join(run_out), None))
                run_raw.clear(), run_out.clear()

        for el, (inserted, piece) in zip(walked.elements, walked.pieces):
            begin, end = el.start - walked.start, el.end - walked.start
            raw = head[begin:end]
            self.raw[el.tag] = raw
            if begin > pos:
                flush()
                segments.append((head[pos:begin], b"", self.GAP))
            if el.tag in volatile or el.tag == SOP_INSTANCE:
                flush()
                if inserted:  # what the profile adds before it: no bytes of the instance, always there
                    segments.append((b"", inserted, None))
                segments.append((raw, piece, el.tag))
            else:
                run_raw.append(raw)
                run_out += [inserted, piece]
            pos = end
        flush()
        if pos < len(head):
            segments.append((head[pos:], b"", self.GAP))
        self.segments = segments

    def apply(self, head: bytes) -> tuple[list, str] | None:
        """The output of `head` (a data set's elements before its pixel data) and its new SOP Instance UID,
        or None when it differs from the template in more than volatile values and dropped elements."""
        out, pos, sop, walk = [], 0, self.sop, None
        for raw, piece, tag in self.segments:
            if head.startswith(raw, pos):
                out.append(piece)
                pos += len(raw)
                continue
            if tag is None:
                return None
            if tag == self.GAP:
                pos = stream.skip_dropped(head, pos, self.implicit, self.skip_private)
                continue
            try:
                elements, after = stream.parse(head, pos, pos + 1, self.implicit, skip_private=self.skip_private)
            except stream.StreamError:
                return None
            if len(elements) != 1 or elements[0].tag != tag or not may_vary(elements[0]) and tag != SOP_INSTANCE:
                return None
            walk = walk or self.walk.on(head)
            out += walk.emit(elements, self.implicit)
            if tag == SOP_INSTANCE:
                value = stream.text(head, elements[0])
                sop = walk.uid(value) if value else ""
            pos = after
        if pos != len(head):
            return None
        out.append(self.tail)
        return out, sop

    def changed(self, walked: Walked, head: bytes) -> frozenset:
        """The volatile elements for a template of `walked` made after this one: this one's, and those
        that differ between the two and may vary."""
        found = set(self.volatile)
        for el in walked.elements:
            if may_vary(el) and self.raw.get(el.tag) != head[el.start - walked.start:el.end - walked.start]:
                found.add(el.tag)
        return frozenset(found)


def deidentified_head(meta: bytes, elements: list, head: bytes, syntax: str, template: Template | None,
                      whole) -> tuple[bytes, Template | None]:
    """The file meta `meta` (its `elements`: stream.meta_elements) and the header `head` (the data set's
    elements before its pixel data, in transfer syntax `syntax`) of one instance, de-identified: by
    `template` when the instance fits it, else by `whole(meta + head, walked)` (deidentify_bytes). Returns
    the bytes and the template for the series' next instance."""
    if template is not None and template.syntax == syntax and head[:2] != b"\x02\x00":
        done = template.apply(head)
        if done is not None:
            out, sop = done
            return file_meta(elements, sop) + b"".join(out), template
    walked: list[Walked] = []
    data = whole(meta + head, walked)
    if not walked or walked[0].start != len(meta):
        return data, None
    volatile = template.changed(walked[0], head) if template is not None else frozenset()
    return data, Template(walked[0], head, syntax, volatile)
