"""De-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile, table-driven.

Why our own transform and not a library: measured on the same 300 small CT instances (pydicom's CT_small,
34 kB, 90 public and 180 private elements), bytes in to bytes out, on the 2-core machine under a load of 7
(bench/deidentify.py; per CPU-second of the process, the steadier figure there): this module 3,768,
dicognito 0.19 110, dicom-anonymizer 2.1 124, deid 0.4.13 64 (docs/pseudonymization.md). None of them keys
UIDs and pseudonyms by a per-project secret with a per-patient date shift kept in a database map, and the
retrieval must stay within 0.8x of a plain one, so the table (apps/dicom/deid_table.py, transcribed from
the standard) drives a walk over the encoded elements (deid_stream.py): what the profile keeps is copied as
the bytes it was, pixel data is never decoded nor changed. Big endian and deflated files, and files without
a preamble, go through pydicom's Dataset (deid_dataset.py), which the tests also use as the reference.

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

import base64
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from typing import Callable

from apps.dicom import deid_stream as stream
from apps.dicom.deid_table import TABLE

PROFILE_BASIC = "basic"
OPTION_DATES = "retain-longitudinal-dates"
OPTION_PATIENT = "retain-patient-characteristics"
OPTION_DEVICE = "retain-device-identity"
OPTION_DESCRIPTORS = "clean-descriptors"
OPTION_PRIVATE = "retain-safe-private"
OPTIONS = (OPTION_DATES, OPTION_PATIENT, OPTION_DEVICE, OPTION_DESCRIPTORS, OPTION_PRIVATE)

# (code value, code meaning) of CID 7050 "De-identification Method", scheme DCM.
CODES = {
    PROFILE_BASIC: ("113100", "Basic Application Confidentiality Profile"),
    OPTION_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    OPTION_DATES: ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    OPTION_PATIENT: ("113108", "Retain Patient Characteristics Option"),
    OPTION_DEVICE: ("113109", "Retain Device Identity Option"),
    OPTION_PRIVATE: ("113111", "Retain Safe Private Option"),
}

# Kinds that usually carry text in their pixels (secondary capture, ultrasound): held back unless they say
# Burned In Annotation NO. Encapsulated documents are files the profile cannot clean: refused.
BURNED_IN_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.6.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.6.2": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound",
}
ENCAPSULATED_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.104."

# Private attributes kept by Retain Safe Private: (group, private creator, element byte), entries of PS3.15
# table E.3.10-1 that hold scaling or acquisition numbers. Kept short on purpose: everything else private goes.
SAFE_PRIVATE = frozenset({
    (0x0019, "GEMS_ACQU_01", 0x23),  # Table Speed [mm/rotation]
    (0x2005, "Philips MR Imaging DD 001", 0x0D), (0x2005, "Philips MR Imaging DD 001", 0x0E),  # scale
    (0x2005, "PHILIPS MR IMAGING DD 001", 0x0D), (0x2005, "PHILIPS MR IMAGING DD 001", 0x0E),  # intercept, slope
    (0x7053, "Philips PET Private Group", 0x00),  # SUV Factor
    (0x7053, "Philips PET Private Group", 0x09),  # Activity Concentration Factor
})
SAFE_CREATORS = frozenset((group, creator) for group, creator, _ in SAFE_PRIVATE)

DROPPED_META = frozenset({0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102})  # AE titles, private
PATIENT_NAME, PATIENT_ID = 0x00100010, 0x00100020
SOP_CLASS, SOP_INSTANCE = 0x00080016, 0x00080018


class DeidentifyError(Exception):
    """An instance that is not passed on; `reason` says why in words a technologist understands."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class HeldBack(DeidentifyError):
    """Likely text in the pixels (burned-in annotation): not de-identifiable by this profile."""


class CannotDeidentify(DeidentifyError):
    """Unreadable, or a kind the profile cannot clean (an encapsulated document)."""


@dataclass(frozen=True)
class Patient:
    pseudonym: str
    date_shift_days: int = 0


@dataclass(frozen=True)
class Deidentified:
    data: bytes
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str  # the pseudonym
    study_date: str  # shifted or emptied
    modality: str


def _mac(secret: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(secret, f"{purpose}\0{value}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def new_uid(secret: bytes, uid: str) -> str:
    """The project's UID for an original UID: 2.25 + 128 bits of an HMAC (at most 44 characters)."""
    return "2.25." + str(int.from_bytes(_mac(secret, "uid", uid.strip("\0 "))[:16], "big"))


def patient_keys(secret: bytes, project: str, patient_id: str, max_shift_days: int) -> Patient:
    """The default pseudonym and date shift of a patient: keyed hashes, so two workers compute the same."""
    code = base64.b32encode(_mac(secret, "patient", patient_id)[:10]).decode("ascii")[:10]
    shift = 0
    if max_shift_days > 0:
        n = int.from_bytes(_mac(secret, "shift", patient_id)[:8], "big") % (2 * max_shift_days)
        shift = n - max_shift_days if n < max_shift_days else n - max_shift_days + 1  # never 0
    return Patient(f"{project}-{code}", shift)


class Recipe:
    """One project's profile: the table resolved for its options, and its secret."""

    def __init__(self, secret: bytes, options=(), allow_burned_in: bool = False):
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise ValueError(f"unknown de-identification options: {', '.join(sorted(unknown))}")
        self.secret = secret
        self.options = frozenset(options)
        self.allow_burned_in = allow_burned_in
        self.actions = {tag: self._resolve(basic, flags) for tag, (basic, flags) in TABLE.items()}
        self._uids: dict[str, str] = {}
        self._inserts: dict[bool, dict[int, bytes]] = {}

    def _resolve(self, basic: str, flags: str) -> str:
        """One letter: X remove, Z empty, D dummy, U new UID, K keep, S shift dates, C clean, Q recurse."""
        o = self.options
        if "L" in flags and OPTION_DATES in o:
            return "S"
        if ("P" in flags and OPTION_PATIENT in o) or ("V" in flags and OPTION_DEVICE in o):
            return "K"
        if ("p" in flags and OPTION_PATIENT in o) or ("v" in flags and OPTION_DEVICE in o) \
                or ("C" in flags and OPTION_DESCRIPTORS in o):
            return "C"
        # The combined actions take the one that keeps the instance valid for any IOD: an attribute that
        # may be Type 2 stays present but empty, one that may be Type 1 gets a dummy value.
        return {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "Q"}.get(basic, basic)

    def uid(self, value: str) -> str:
        found = self._uids.get(value)
        if found is None:
            if len(self._uids) > 100_000:
                self._uids.clear()
            found = self._uids[value] = new_uid(self.secret, value)
        return found

    def safe_private(self, group: int, creator: str, element: int | None) -> bool:
        """Whether Retain Safe Private keeps this private element (None: the creator element itself)."""
        if OPTION_PRIVATE not in self.options:
            return False
        creator = creator.strip()
        if element is None:
            return (group, creator) in SAFE_CREATORS
        return (group, creator, element) in SAFE_PRIVATE

    def inserts(self, implicit: bool) -> dict[int, bytes]:
        """The elements that record what was done, encoded once per recipe and VR form."""
        found = self._inserts.get(implicit)
        if found is None:
            dates = b"MODIFIED" if OPTION_DATES in self.options else b"REMOVED"
            found = self._inserts[implicit] = {
                0x00120062: stream.element_bytes(0x00120062, "CS", b"YES", implicit),
                0x00120063: stream.element_bytes(0x00120063, "LO", self.method_text().encode(), implicit),
                0x00120064: stream.code_sequence(self.method_codes(), implicit),
                0x00280303: stream.element_bytes(0x00280303, "CS", dates, implicit),
            }
        return found

    def method_text(self) -> str:
        names = ["PS3.15 E.1-1 Basic Application Confidentiality Profile"]
        names += [CODES[o][1] for o in OPTIONS if o in self.options]
        return "; ".join(names)[:64]

    def method_codes(self) -> list[tuple[str, str]]:
        return [CODES[PROFILE_BASIC]] + [CODES[o] for o in OPTIONS if o in self.options]


def burned_in_reason(sop_class: str, burned_in: str) -> str | None:
    """Why an instance is held back as likely to show text in its pixels; None when it is not."""
    said = burned_in.strip().upper()
    if said == "YES":
        return "Burned In Annotation is YES: text in the pixels cannot be removed by the profile"
    kind = BURNED_IN_CLASSES.get(sop_class.strip())
    if kind and said != "NO":
        return f"a {kind} instance without Burned In Annotation NO may show text in its pixels"
    return None


def _cleans(recipe: Recipe) -> bool:
    return bool(recipe.options & {OPTION_DESCRIPTORS, OPTION_PATIENT, OPTION_DEVICE})


def _pattern(values: list[str]):
    """A pattern matching any of the patient's identifiers (two characters or more), or None."""
    found = sorted({v.strip() for v in values if len(v.strip()) >= 2}, key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in found), re.IGNORECASE) if found else None


def _check_kind(sop_class: str, burned_in: str, recipe: Recipe) -> None:
    if sop_class.startswith(ENCAPSULATED_CLASS_PREFIX):
        raise CannotDeidentify("an encapsulated document: its content cannot be cleaned by the profile")
    if not recipe.allow_burned_in:
        reason = burned_in_reason(sop_class, burned_in)
        if reason:
            raise HeldBack(reason)


def deidentify_bytes(data: bytes, recipe: Recipe, patient_for: Callable[[str], Patient]) -> Deidentified:
    """De-identify a Part-10 file's bytes for the patient `patient_for(original PatientID)` names, in its
    own transfer syntax, pixel data as it was. Raises HeldBack or CannotDeidentify."""
    try:
        meta, start, syntax = stream.read_meta(data)
    except stream.StreamError:
        meta = None  # no preamble or an odd file meta: pydicom reads it, or says why it cannot
    if meta is not None and syntax not in stream.NOT_STREAMED:
        try:
            return _deidentify_stream(data, meta, start, syntax, recipe, patient_for)
        except stream.StreamError as exc:
            # A broken file is refused, never filed as the part that could be read.
            raise CannotDeidentify(f"unreadable DICOM: {exc}") from None
    from apps.dicom.deid_dataset import deidentify_with_pydicom

    return deidentify_with_pydicom(data, recipe, patient_for)


def _deidentify_stream(data, meta, start, syntax, recipe: Recipe, patient_for) -> Deidentified:
    implicit = syntax == stream.IMPLICIT_LE
    elements, _ = stream.parse(data, start, len(data), implicit,
                                skip_private=OPTION_PRIVATE not in recipe.options)
    top = {el.tag: el for el in elements}

    def value(tag: int) -> str:
        el = top.get(tag)
        return stream.text(data, el) if el is not None and el.items is None else ""

    encodings = stream.encodings_of(value(0x00080005))

    def decoded(tag: int, vr: str) -> str:
        el = top.get(tag)
        if el is None or el.items is not None or not el.length:
            return ""
        return stream.decode_text(data[el.value_start:el.value_start + el.length], vr, encodings)

    _check_kind(value(SOP_CLASS), value(0x00280301), recipe)
    patient = patient_for(decoded(PATIENT_ID, "LO"))
    scrub = None
    if _cleans(recipe):
        found = [decoded(PATIENT_ID, "LO"), decoded(0x00080050, "SH"), value(0x00100030)]
        found += decoded(0x00101000, "LO").split("\\")
        found += re.split(r"[\^=]", decoded(PATIENT_NAME, "PN"))
        scrub = _pattern(found)
    days = patient.date_shift_days if OPTION_DATES in recipe.options else None
    inserts = recipe.inserts(implicit)
    walk = stream.StreamWalk(data, recipe.actions, recipe.uid, patient.pseudonym, days, scrub,
                             recipe.safe_private, encodings)
    body = walk.emit(elements, implicit, inserts)
    sop = recipe.uid(value(SOP_INSTANCE)) if value(SOP_INSTANCE) else ""
    meta_parts = []
    for el in meta:
        if el.tag == 0x00020000 or el.tag in DROPPED_META:
            continue
        if el.tag == 0x00020003:
            meta_parts.append(stream.element_bytes(0x00020003, "UI", sop.encode(), False))
        else:
            meta_parts.append(data[el.start:el.end])
    meta_body = b"".join(meta_parts)
    group_length = stream.header(0x00020000, "UL", 4, False) + struct.pack("<I", len(meta_body))
    study_date = value(0x00080020)
    if recipe.actions.get(0x00080020) == "S":
        study_date = stream.shift_dates(study_date, "DA", days or 0) or ""
    else:
        study_date = ""
    return Deidentified(
        data=b"".join([b"\0" * 128, b"DICM", group_length, meta_body, *body]), sop_instance_uid=sop,
        study_instance_uid=recipe.uid(value(0x0020000D)) if value(0x0020000D) else "",
        series_instance_uid=recipe.uid(value(0x0020000E)) if value(0x0020000E) else "",
        patient_id=patient.pseudonym, study_date=study_date, modality=value(0x00080060),
    )
