"""De-identification's rules, shared by the byte walk (deidentify.py) and pydicom's path (deid_dataset.py):
the profile's options and codes, the keyed UIDs and pseudonyms, the recipe of a project, and what is held
back. The why and the scheme are in deidentify.py's header."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from apps.dicom.deid_table import TABLE
from apps.dicom.element_codec import element_bytes, header, item_header
from apps.dicom.split import FileRange

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
    """A de-identified instance: `data`, followed, for a large file, by its pixel data element left in the
    original (`rest`), which the profile never changes: read and write it through size, chunks, write_to."""
    data: bytes
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str  # the pseudonym
    study_date: str  # shifted or emptied
    modality: str
    rest: FileRange | None = None

    @property
    def size(self) -> int:
        return len(self.data) + (self.rest.length if self.rest else 0)

    def chunks(self) -> Iterator[bytes]:
        """The instance's bytes in pieces of at most a megabyte past `data`. Raises InvalidDicomFile when the
        original changed since."""
        yield self.data
        if self.rest is not None:
            yield from self.rest.chunks()

    def write_to(self, out: BinaryIO) -> None:
        for piece in self.chunks():
            out.write(piece)

    def save(self, target: Path) -> None:
        """Write the instance to `target` under a temporary name, then rename it, so `target` is never
        seen half-written. Raises InvalidDicomFile when the original changed since, OSError when the disk
        fails (a full one); either way nothing is left, not even the temporary file."""
        partial = target.with_name(target.name + ".partial")
        try:
            with open(partial, "wb") as out:
                self.write_to(out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)

    def read_into(self, at: int, into: memoryview) -> None:
        """Fill `into` with the bytes from `at` on (a zip stream reads a large instance block by block)."""
        head = memoryview(self.data)[at:at + len(into)]
        into[:len(head)] = head
        if len(head) < len(into):
            self.rest.read_into(max(0, at - len(self.data)), into[len(head):])


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
                0x00120062: element_bytes(0x00120062, "CS", b"YES", implicit),
                0x00120063: element_bytes(0x00120063, "LO", self.method_text().encode(), implicit),
                0x00120064: code_sequence(self.method_codes(), implicit),
                0x00280303: element_bytes(0x00280303, "CS", dates, implicit),
            }
        return found

    def method_text(self) -> str:
        names = ["PS3.15 E.1-1 Basic Application Confidentiality Profile"]
        names += [CODES[o][1] for o in OPTIONS if o in self.options]
        return "; ".join(names)[:64]

    def method_codes(self) -> list[tuple[str, str]]:
        return [CODES[PROFILE_BASIC]] + [CODES[o] for o in OPTIONS if o in self.options]


def code_sequence(codes: list[tuple[str, str]], implicit: bool) -> bytes:
    """(0012,0064) De-identification Method Code Sequence with DCM codes, defined lengths."""
    items = []
    for value, meaning in codes:
        inner = (element_bytes(0x00080100, "SH", value.encode(), implicit)
                 + element_bytes(0x00080102, "SH", b"DCM", implicit)
                 + element_bytes(0x00080104, "LO", meaning.encode(), implicit))
        items.append(item_header(len(inner)) + inner)
    body = b"".join(items)
    return header(0x00120064, "SQ", len(body), implicit) + body


def burned_in_reason(sop_class: str, burned_in: str) -> str | None:
    """Why an instance is held back as likely to show text in its pixels; None when it is not."""
    said = burned_in.strip().upper()
    if said == "YES":
        return "Burned In Annotation is YES: text in the pixels cannot be removed by the profile"
    kind = BURNED_IN_CLASSES.get(sop_class.strip())
    if kind and said != "NO":
        return f"a {kind} instance without Burned In Annotation NO may show text in its pixels"
    return None


def cleans_descriptors(recipe: Recipe) -> bool:
    return bool(recipe.options & {OPTION_DESCRIPTORS, OPTION_PATIENT, OPTION_DEVICE})


def scrub_pattern(values: list[str]):
    """A pattern matching any of the patient's identifiers (two characters or more), or None."""
    found = sorted({v.strip() for v in values if len(v.strip()) >= 2}, key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in found), re.IGNORECASE) if found else None


def check_kind(sop_class: str, burned_in: str, recipe: Recipe) -> None:
    if sop_class.startswith(ENCAPSULATED_CLASS_PREFIX):
        raise CannotDeidentify("an encapsulated document: its content cannot be cleaned by the profile")
    if not recipe.allow_burned_in:
        reason = burned_in_reason(sop_class, burned_in)
        if reason:
            raise HeldBack(reason)
