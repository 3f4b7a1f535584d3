"""The demo PACS's index and C-FIND matching (PS3.4 C.2.2.2): single values, * and ? wildcards,
date/time ranges, UID lists, ModalitiesInStudy, and the number-of-related counts; pure functions over
header records read from files, so they are easy to test and keep qrscp.py about networking."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
UNIQUE_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
              "IMAGE": "SOPInstanceUID"}
LEVEL_KEYS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "STUDY": ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription", "StudyID",
              "ReferringPhysicianName"),
    "SERIES": ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined"),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
class InvalidIdentifier(ValueError):
    """The C-FIND/C-MOVE/C-GET identifier does not fit the information model."""


def read_record(path: Path) -> dict | None:
    """The index entry of one file (headers only), or None if it is not a DICOM instance."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "SOPInstanceUID" not in ds:
            return None
        record = {kw: text_value(ds.get(kw)) for keys in LEVEL_KEYS.values() for kw in keys}
        record["SpecificCharacterSet"] = ds.get("SpecificCharacterSet")
        record["TransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, OSError, ValueError):
        return None
    record["path"] = path
    return record


def text_value(value) -> str:
    return "" if value is None else str(value).strip()


# ---- matching (PS3.4 C.2.2.2) ----

def requested_values(elem) -> list[str]:
    value = elem.value
    values = list(value) if isinstance(value, (MultiValue, list)) else [value]
    return [v for v in (text_value(v) for v in values) if v]


def _range_bound(value: str, vr: str, pad: str) -> str:
    digits = re.sub(r"[^0-9]", "", value.split(".")[0])
    return digits.ljust(6, pad) if vr == "TM" else digits


def _matches_one(pattern: str, value: str, vr: str) -> bool:
    if vr in ("DA", "TM") and "-" in pattern:
        low, high = pattern.split("-", 1)
        value = _range_bound(value, vr, "0")
        return bool(value) and (not low or value >= _range_bound(low, vr, "0")) and (
            not high or value <= _range_bound(high, vr, "9"))
    if vr != "UI" and ("*" in pattern or "?" in pattern):
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.fullmatch(regex, value, re.IGNORECASE if vr == "PN" else 0) is not None
    if vr == "PN":
        return pattern.casefold() == value.casefold()
    return pattern == value


def matches(row: dict, identifier: Dataset) -> bool:
    for elem in identifier:
        if elem.keyword not in row or elem.VR == "SQ":
            continue
        wanted = requested_values(elem)
        have = row[elem.keyword] if isinstance(row[elem.keyword], list) else [row[elem.keyword]]
        if wanted and not any(_matches_one(w, h, elem.VR) for w in wanted for h in have):
            return False
    return True


def _counts(level: str, members: list[dict]) -> dict:
    """The computed attributes of one entity (PS3.4 C.3), from all its instances."""
    def distinct(key):
        return str(len({m[key] for m in members}))
    if level == "PATIENT":
        return {"NumberOfPatientRelatedStudies": distinct("StudyInstanceUID"),
                "NumberOfPatientRelatedSeries": distinct("SeriesInstanceUID"),
                "NumberOfPatientRelatedInstances": str(len(members))}
    if level == "STUDY":
        return {"ModalitiesInStudy": sorted({m["Modality"] for m in members if m["Modality"]}),
                "NumberOfStudyRelatedSeries": distinct("SeriesInstanceUID"),
                "NumberOfStudyRelatedInstances": str(len(members))}
    if level == "SERIES":
        return {"NumberOfSeriesRelatedInstances": str(len(members))}
    return {}


def entity_rows(records: list[dict], level: str) -> list[dict]:
    """One row per entity at `level`: its own and its parents' attributes, computed counts, and
    `_members` (its instances). Matching on these rows is the relational query of PS3.4 C.4.1.2.2."""
    upper = LEVELS[:LEVELS.index(level) + 1]
    groups = {lvl: defaultdict(list) for lvl in upper}
    for record in records:
        for lvl in upper:
            groups[lvl][record[UNIQUE_KEY[lvl]]].append(record)
    rows = []
    for members in groups[level].values():
        first = members[0]
        row = {kw: first[kw] for lvl in upper for kw in LEVEL_KEYS[lvl]}
        for lvl in upper:
            row.update(_counts(lvl, groups[lvl][first[UNIQUE_KEY[lvl]]]))
        row["_members"] = members
        rows.append(row)
    return rows


def find_response(row: dict, identifier: Dataset, level: str, ae_title: str) -> Dataset:
    """Only the keys that were asked for, plus QueryRetrieveLevel and SpecificCharacterSet."""
    ds = Dataset()
    charset = row["_members"][0]["SpecificCharacterSet"]
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    for elem in identifier:
        if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        value = ae_title if elem.keyword == "RetrieveAETitle" else row.get(elem.keyword)
        ds.add(DataElement(elem.tag, elem.VR, value if value not in ("", None) and elem.VR != "SQ" else None))
    return ds
