"""De-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile, table-driven.

Why our own transform and not a library: measured on the same 300 small CT instances (pydicom's CT_small,
34 kB, 90 public and 180 private elements), bytes in to bytes out, on the 2-core machine under a load of 7
(bench/deidentify.py; per CPU-second of the process, the steadier figure there): this module 3,768,
dicognito 0.19 110, dicom-anonymizer 2.1 124, deid 0.4.13 64 (docs/pseudonymization.md). None of them keys
UIDs and pseudonyms by a per-project secret with a per-patient date shift kept in a database map, and the
retrieval must stay within 0.8x of a plain one, so the table (apps/dicom/deid_table.py, transcribed from
the standard) drives a walk over the encoded elements (deid_stream.py; the elements are read and written by
element_codec.py): what the profile keeps is copied as the bytes it was, pixel data is never decoded nor
changed. Big endian and deflated files, and files without a preamble, go through pydicom's Dataset
(deid_dataset.py), which the tests also use as the reference.

The scheme (docs/pseudonymization.md):
- a UID becomes ``2.25.<int>``, the integer being the first 128 bits of HMAC-SHA256(project secret, UID):
  the same original UID gives the same new UID in every job and worker of a project, and a different one in
  another project;
- PatientID and PatientName become the patient's pseudonym, handed in by the caller (the project's map);
  ``patient_keys`` gives the default one: ``<PROJECT>-<10 base32 characters of an HMAC of the PatientID>``
  and a date shift in [-max, -1] ∪ [1, max] days from another HMAC, so the map only records them;
- with Retain Longitudinal Temporal Information with Modified Dates every DA and the date part of every DT of
  the instance (nested sequences too) moves by the patient's shift; times are kept (whole days move).
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from apps.dicom import element_codec as codec
from apps.dicom import files, split
from apps.dicom.deid_dataset import deidentify_with_pydicom
from apps.dicom.deid_rules import *  # noqa: F403 - the rules' public names are this module's too
from apps.dicom.deid_rules import (  # noqa: F401 - the callers' names: options, errors, keys
    DROPPED_META,
    OPTION_DATES,
    OPTION_PRIVATE,
    OPTIONS,
    PATIENT_ID,
    PATIENT_NAME,
    PROFILE_BASIC,
    SOP_CLASS,
    SOP_INSTANCE,
    CannotDeidentify,
    Deidentified,
    HeldBack,
    Patient,
    Recipe,
    burned_in_reason,
    check_kind,
    cleans_descriptors,
    new_uid,
    patient_keys,
    scrub_pattern,
)
from apps.dicom.deid_stream import StreamWalk, decode_text, encodings_of, shift_dates
from apps.dicom.element_facts import BIG_ENDIAN_OR_DEFLATED, IMPLICIT_LE
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.paths import NotRegularFile, open_regular


def deidentify_bytes(data: bytes, recipe: Recipe, patient_for: Callable[[str], Patient],
                     walked: list | None = None) -> Deidentified:
    """De-identify a Part-10 file's bytes for the patient `patient_for(original PatientID)` names, in its
    own transfer syntax, pixel data as it was. Raises HeldBack or CannotDeidentify. When the elements were
    walked (little endian), the walk is appended to `walked` (a Walked, for deid_series)."""
    try:
        meta, start, syntax = codec.read_meta(data)
    except codec.StreamError:
        meta = None  # no preamble or an odd file meta: pydicom reads it, or says why it cannot
    if meta is not None and syntax not in BIG_ENDIAN_OR_DEFLATED:
        try:
            return _deidentify_stream(data, meta, start, syntax, recipe, patient_for, walked)
        except codec.StreamError as exc:
            # A broken file is refused, never filed as the part that could be read.
            raise CannotDeidentify(f"unreadable DICOM: {exc}") from None
    return deidentify_with_pydicom(data, recipe, patient_for)


def deidentify_file(path: str | os.PathLike, recipe: Recipe, patient_for: Callable[[str], Patient], *,
                    before: Callable[[bytes], bytes] | None = None) -> Deidentified:
    """deidentify_bytes of a regular file, proven complete DICOM first (pydicom's path, and a rewrite, would
    read a cut file without complaint). A file up to files.LARGE_FILE_BYTES is read whole; a larger one gives
    its head (file meta and the elements before the pixel data, split.py) to the transform, and its pixel
    data element stays in the file (`rest`: the profile never changes pixels, and drops what follows them),
    so a 2 GB instance costs its header. `before` changes the bytes first (an inbox's patient rewrite).
    Raises HeldBack or CannotDeidentify (naming no path)."""
    name = os.fspath(path)
    try:
        with open_regular(path) as fp:
            found = None
            if os.fstat(fp.fileno()).st_size > files.LARGE_FILE_BYTES:
                try:
                    found = split.split(fp, name)
                except split.NotSplittable:
                    pass
            data = found.head if found is not None else None
        if data is None:
            data = files.read_checked(path)[1]
    except NotRegularFile:
        raise CannotDeidentify(f"{Path(name).name} is not a regular file") from None
    except OSError as exc:
        raise CannotDeidentify(f"cannot open {Path(name).name}: {exc.strerror}") from None
    except InvalidDicomFile as exc:
        raise CannotDeidentify(f"unreadable DICOM: {exc.message.removeprefix(name + ': ')}") from None
    result = deidentify_bytes(before(data) if before else data, recipe, patient_for)
    if found is None or found.pixels is None:
        return result
    pixels = found.pixels
    return replace(result, rest=split.FileRange(name, pixels.start, pixels.end - pixels.start, found.info.size))


@dataclass
class Walked:
    """One instance's walk over its elements, kept for the next instance of its series (deid_series.py)."""

    walk: StreamWalk
    implicit: bool
    skip_private: bool
    start: int  # where the data set starts in the walked bytes (after the file meta)
    elements: list  # the top-level elements (codec.Element)
    pieces: list  # for each element, (the inserts placed before it, its own output)
    tail: bytes  # the inserts after the last element
    sop: str  # the new SOP Instance UID


def _deidentify_stream(data, meta, start, syntax, recipe: Recipe, patient_for, walked=None) -> Deidentified:
    implicit = syntax == IMPLICIT_LE
    skip_private = OPTION_PRIVATE not in recipe.options
    elements, _ = codec.parse(data, start, len(data), implicit, skip_private=skip_private)
    top = {el.tag: el for el in elements}

    def value(tag: int) -> str:
        el = top.get(tag)
        return codec.text(data, el) if el is not None and el.items is None else ""

    encodings = encodings_of(value(0x00080005))

    def decoded(tag: int, vr: str) -> str:
        el = top.get(tag)
        if el is None or el.items is not None or not el.length:
            return ""
        return decode_text(data[el.value_start:el.value_start + el.length], vr, encodings)

    check_kind(value(SOP_CLASS), value(0x00280301), recipe)
    patient = patient_for(decoded(PATIENT_ID, "LO"))
    scrub = None
    if cleans_descriptors(recipe):
        found = [decoded(PATIENT_ID, "LO"), decoded(0x00080050, "SH"), value(0x00100030)]
        found += decoded(0x00101000, "LO").split("\\")
        found += re.split(r"[\^=]", decoded(PATIENT_NAME, "PN"))
        scrub = scrub_pattern(found)
    days = patient.date_shift_days if OPTION_DATES in recipe.options else None
    inserts = recipe.inserts(implicit)
    walk = StreamWalk(data, recipe.actions, recipe.uid, patient.pseudonym, days, scrub,
                             recipe.safe_private, encodings)
    marks = [] if walked is not None else None
    body = walk.emit(elements, implicit, inserts, marks)
    sop = recipe.uid(value(SOP_INSTANCE)) if value(SOP_INSTANCE) else ""
    if walked is not None:
        pieces = [(b"".join(body[a:b]), b"".join(body[b:c])) for a, b, c in zip(marks[::2], marks[1::2], marks[2::2])]
        walked.append(Walked(walk, implicit, skip_private, start, elements, pieces, b"".join(body[marks[-1]:]),
                             sop))
    study_date = value(0x00080020)
    if recipe.actions.get(0x00080020) == "S":
        study_date = shift_dates(study_date, "DA", days or 0) or ""
    else:
        study_date = ""
    return Deidentified(
        data=b"".join([file_meta([(el.tag, data[el.start:el.end]) for el in meta], sop), *body]),
        sop_instance_uid=sop,
        study_instance_uid=recipe.uid(value(0x0020000D)) if value(0x0020000D) else "",
        series_instance_uid=recipe.uid(value(0x0020000E)) if value(0x0020000E) else "",
        patient_id=patient.pseudonym, study_date=study_date, modality=value(0x00080060),
    )


def file_meta(elements: list[tuple[int, bytes]], sop: str) -> bytes:
    """The preamble and the file meta of a de-identified instance, from the (tag, encoded element) pairs of
    the original's: its own group length, Media Storage SOP Instance UID the new `sop`, the source's and
    the sender's AE titles and private elements dropped."""
    parts = []
    for tag, encoded in elements:
        if tag == 0x00020000 or tag in DROPPED_META:
            continue
        parts.append(codec.element_bytes(0x00020003, "UI", sop.encode(), False) if tag == 0x00020003 else encoded)
    body = b"".join(parts)
    return b"".join([b"\0" * 128, b"DICM", codec.header(0x00020000, "UL", 4, False), struct.pack("<I", len(body)),
                     body])
