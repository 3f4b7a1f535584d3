"""The de-identifying form of a research project's move (see staged.Verbatim): the receiver (and a C-GET)
write each instance de-identified as it is staged, so filing it is a rename, as for a plain retrieval.

Only the header (the elements before the pixel data) is de-identified (deidentify.deidentify_bytes's walk,
reused from the series' previous instance by deid_series.py, each receiving thread its own); the pixel
data element passes through unchanged (the profile never changes pixels), as the view it arrived in for an
instance received whole, and as it arrives for a streamed one (wire/streamed.py). So de-identifying costs
a walk over a few kilobytes whatever the size of the image. The elements that may follow the pixel data (Digital Signatures (FFFA,FFFA), Data
Set Trailing Padding (FFFC,FFFC)) are dropped: the profile removes both. An instance the project holds
back, or that cannot be de-identified, is staged as a placeholder naming why (staged.Withheld), so it
still counts as arrived and is listed with its reason when the study is filed.

Consistency is the recipe's (UIDs keyed by the project's secret) and `patient_for`'s (the project's map,
which the caller reads from the database): the same in every process."""
from __future__ import annotations

import threading
from typing import Callable

from apps.dicom import deid_series, deidentify, element_codec, files
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.staged import Withheld
from apps.dicom.wire.streamed import PixelCheck

PROBE_BYTES = 1024  # read past the template's header length: a series' headers differ by a few bytes


class Deidentifying:
    keeps_trailer = False

    def __init__(self, recipe: deidentify.Recipe, patient_for: Callable[[str], deidentify.Patient]):
        self.recipe, self.patient_for = recipe, patient_for
        self._local = threading.local()  # each receiving thread's series template (deid_series.Template)

    def whole(self, chunks):
        """An instance received whole, as (file meta, dataset): its header de-identified, and its pixel data
        element passed on as the view it is (no copy of the pixels, which are most of the bytes)."""
        if len(chunks) != 2:
            return self._deidentified(chunks)
        meta, dataset = bytes(chunks[0]), chunks[1]
        elements = element_codec.meta_elements(meta)
        syntax = next((v[8:].decode("latin-1").rstrip("\0 ") for t, v in elements or () if t == 0x00020010), "")
        if not syntax:
            return self._deidentified(chunks)  # which says why it cannot
        template = getattr(self._local, "template", None)
        fits = None
        if template is not None and template.syntax == syntax:
            fits = template.apply(bytes(memoryview(dataset)[:template.length + PROBE_BYTES]))
        try:
            end = fits[2] if fits else files.header_end(dataset, syntax)
            if end is None:  # no pixel data, or deflated: all of it
                return self._deidentified(chunks)
            check = PixelCheck(syntax)
            pixels = check.feed(memoryview(dataset)[end:])
            check.finish()
        except (element_codec.StreamError, InvalidDicomFile):
            return self._deidentified(chunks)  # which says why it cannot
        if fits:  # the series' previous instance's walk, reused (deid_series.py)
            head = deidentify.file_meta(elements, fits[1]) + b"".join(fits[0])
        else:
            head, self._local.template = deid_series.walked(meta, bytes(memoryview(dataset)[:end]), syntax,
                                                            template, self._walked)
        return [head, memoryview(dataset)[end:end + pixels]]

    def _walked(self, data: bytes, walked: list) -> bytes:
        try:
            return deidentify.deidentify_bytes(data, self.recipe, self.patient_for, walked).data
        except deidentify.HeldBack as exc:
            raise Withheld(f"held back: {exc.reason}") from None
        except deidentify.CannotDeidentify as exc:
            raise Withheld(f"not de-identified: {exc.reason}") from None

    def head(self, chunks):
        """The file meta and the header (the elements before the pixel data) of a streamed instance,
        de-identified: a Part-10 file without pixel data, to which the rest is appended as it arrives."""
        return self._deidentified(chunks)

    def _deidentified(self, chunks) -> bytes:
        data = chunks if isinstance(chunks, (bytes, bytearray)) else b"".join(chunks)
        return self._walked(bytes(data), None)
