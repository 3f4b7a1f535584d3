"""Query identifiers (any level, and the study-level ones of every entry point), how messages name what
an identifier asks for, and the one way the portal reads a study date.

Used by the case lists of batch retrieval, the query API, the admin and the CLI, so that every entry
point accepts the same dates and refuses the same mistakes with the same words.

Dates: `YYYY-MM-DD` or `YYYYMMDD`, and ranges written either as the case lists do (`A..B`) or as DICOM
does (`A-B`), each end in either form; a range may be open at one end (`A..`, `-B`). The result is the
DICOM form (`YYYYMMDD`, `YYYYMMDD-YYYYMMDD`, `YYYYMMDD-`, `-YYYYMMDD`).
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from copy import deepcopy

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from apps.dicom.connect import text_value
from apps.dicom.element_codec import StreamError, element_bytes

STUDY_KEYS = (
    "PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
FILTERS = ("PatientID", "PatientName", "StudyDate", "Modality", "StudyInstanceUID", "AccessionNumber")
_DAY = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_DICOM_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$")
DATE_FORMS = "YYYY-MM-DD, or a range YYYY-MM-DD..YYYY-MM-DD (YYYYMMDD and YYYYMMDD-YYYYMMDD also work)"


class QueryError(ValueError):
    """A filter the PACS would misread; the message names the filter and the expected form."""


# In a C-FIND, '*' and '?' match any text or any one character and '\\' separates several values: in a
# value meant literally, each one widens the query to studies of other patients.
WIDENING_CHARACTERS = {
    "*": "'*' (a C-FIND wildcard matching any text)",
    "?": "'?' (a C-FIND wildcard matching any one character)",
    "\\": "'\\' (separates several values in a C-FIND)",
}
_CONTROL_NAMES = {"\0": "a NUL character", "\n": "a line break", "\r": "a line break", "\t": "a tab"}


_NOT_LITERAL = re.compile(r"[*?\\\x00-\x1f\x7f]")


def literal_value_problem(keyword: str, value: str) -> str:
    """'' when `value` can only match itself in a C-FIND; otherwise why not, naming the character."""
    found = _NOT_LITERAL.search(value)
    if found:
        char = found.group()
        if char in WIDENING_CHARACTERS:
            return (f"{keyword} '{value}' contains {WIDENING_CHARACTERS[char]}; a case list matches exactly, "
                    "so this row could fetch another patient's studies")
        name = _CONTROL_NAMES.get(char, f"a control character (U+{ord(char):04X})")
        return f"{keyword} contains {name}; a case-list value is one line of plain text"
    return ""


def _day(text: str, given: str) -> str:
    match = _DAY.match(text.strip())
    if match:
        try:
            day = dt.date(*(int(part) for part in match.groups()))
        except ValueError:
            day = None
        if day is not None:
            return f"{day.year:04d}{day.month:02d}{day.day:02d}"  # strftime drops a year's leading zeros
    raise QueryError(f"StudyDate '{given}' is not a real date in YYYY-MM-DD form")


@functools.lru_cache(maxsize=4096)  # a long case list repeats a few dates many times
def parse_study_date(text: str) -> str:
    """'2025-09-22' -> '20250922'; '2025-01-01..2025-03-31' and '20250101-20250331' -> '20250101-20250331'."""
    given = text.strip()
    if ".." in given:
        start, _, end = (part.strip() for part in given.partition(".."))
    elif _DICOM_RANGE.match(given):
        start, _, end = given.partition("-")
    else:
        return _day(given, given)
    if not start and not end:
        raise QueryError(f"StudyDate '{given}' is a range without dates; use {DATE_FORMS}")
    first, last = (_day(start, given) if start else ""), (_day(end, given) if end else "")
    if first and last and first > last:
        raise QueryError(f"StudyDate range '{given}' ends before it starts")
    return f"{first}-{last}"


def study_query(filters: dict[str, str]) -> dict[str, str]:
    """The C-FIND identifier at study level for `filters` (keys of FILTERS; unknown keys are refused, not
    ignored), asking for every key of STUDY_KEYS back."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise QueryError(f"Unknown filter(s) {', '.join(unknown)}; use {', '.join(FILTERS)}.")
    query = {key: "" for key in STUDY_KEYS}
    for key, value in filters.items():
        value = (value or "").strip()
        if not value:
            continue
        if key == "StudyDate":
            value = parse_study_date(value)
        query["ModalitiesInStudy" if key == "Modality" else key] = value
    return query


LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def identifier(level: str, query: dict | Dataset) -> Dataset:
    """The C-FIND/C-MOVE/C-GET identifier for `query` (attribute keyword -> value, or a Dataset) at `level`."""
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"query level must be one of {', '.join(LEVELS)}, not {level!r}")
    if isinstance(query, Dataset):
        ds = deepcopy(query)
    else:
        ds = Dataset()
        for keyword, value in query.items():
            if tag_for_keyword(keyword) is None:
                raise ValueError(f"'{keyword}' is not a DICOM attribute keyword")
            setattr(ds, keyword, "" if value is None else value)
    ds.QueryRetrieveLevel = level
    return ds


# Text VRs whose values pydicom writes as given (padded to an even length); IS and DS only when empty, since
# pydicom turns their values into numbers first.
_AS_GIVEN_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_NUMBER_VRS = frozenset({"IS", "DS"})


@functools.lru_cache(maxsize=512)
def _tag_and_vr(keyword: str) -> tuple[int, str] | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else (tag, dictionary_VR(tag))


def identifier_bytes(level: str, query: dict | Dataset, *, implicit_vr: bool, little_endian: bool = True) -> bytes:
    """identifier(level, query) encoded for a request, byte for byte as pynetdicom's encode() writes it.
    A query of plain ASCII text (every case-list row's) is written directly: building a pydicom Dataset and
    writing it cost about a millisecond per row, as much as the C-FIND itself; anything else goes through
    pydicom."""
    fast = _plain_identifier(level.upper(), query, implicit_vr) if little_endian and isinstance(query, dict) else None
    if fast is not None:
        return fast
    return encode(identifier(level, query), implicit_vr, little_endian)


def _plain_identifier(level: str, query: dict, implicit_vr: bool) -> bytes | None:
    """The encoded identifier, or None when a key or value needs pydicom (not text, not printable ASCII,
    a number VR with a value, too long for its length field)."""
    if level not in LEVELS:
        return None  # identifier() says why
    elements = []
    for keyword, value in {**query, "QueryRetrieveLevel": level}.items():
        known = _tag_and_vr(keyword)
        value = "" if value is None else value
        if known is None or not isinstance(value, str) or not (value.isascii() and value.isprintable()):
            return None
        tag, vr = known
        if vr not in _AS_GIVEN_VRS and not (vr in _NUMBER_VRS and not value):
            return None
        try:
            elements.append((tag, element_bytes(tag, vr, value.encode("ascii"), implicit_vr)))
        except StreamError:  # too long for its length field
            return None
    return b"".join(data for _, data in sorted(elements))


def describe_query(ds: Dataset) -> str:
    """What an identifier asks for, in words for messages ("study 1.2.3"), without patient data."""
    for keyword, words in (("SOPInstanceUID", "instance"), ("SeriesInstanceUID", "series"), ("StudyInstanceUID", "study")):
        if text_value(ds.get(keyword, "")):
            return f"{words} {text_value(ds.get(keyword))}"
    # patient IDs stay out of messages, which reach logs and job reports
    return "the patient's studies" if text_value(ds.get("PatientID", "")) else f"the {ds.QueryRetrieveLevel} query"
