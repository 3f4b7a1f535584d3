"""Study-level C-FIND with the filters of seed 001: PatientID, PatientName, StudyDate range, Modality.

Shared by GET /api/servers/{name}/studies, `manage.py dicom query` and the admin. Filters are
validated here so every entry point gives the same clear message for a bad date.
"""
from __future__ import annotations

import datetime as dt
import re

from apps.dicom import dimse
from apps.servers.models import DicomServer, local_ae

STUDY_KEYS = (
    "PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
FILTERS = ("PatientID", "PatientName", "StudyDate", "Modality", "StudyInstanceUID", "AccessionNumber")
# A query with none of these lists every patient of the PACS: it needs the "query without filter" permission.
NARROWING = ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyInstanceUID")
UNFILTERED_REFUSAL = ("A query without PatientID, PatientName, StudyDate, AccessionNumber or StudyInstanceUID "
                      "lists every patient of the server; it needs the permission 'Can query servers without a "
                      "patient, date or accession filter'. Add one of those filters.")
_DATE_RANGE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")


class QueryError(ValueError):
    """A filter the PACS would misread; the message names the filter and the expected form."""


def _check_date(value: str, given: str) -> None:
    try:
        dt.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise QueryError(f"StudyDate '{given}' is not a real date (YYYYMMDD).") from None


def normalize_study_date(value: str) -> str:
    """Accept YYYYMMDD, YYYYMMDD-YYYYMMDD, open ranges, and YYYY-MM-DD (the seeds' CSV form)."""
    given = value = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        value = value.replace("-", "")
    m = _DATE_RANGE.match(value)
    if not value or not m or not (m.group(1) or m.group(3)) or (m.group(3) and not m.group(2)):
        raise QueryError(f"StudyDate '{given}' must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD.")
    for part in (m.group(1), m.group(3)):
        if part:
            _check_date(part, given)
    if m.group(1) and m.group(3) and m.group(1) > m.group(3):
        raise QueryError(f"StudyDate range '{value}' ends before it starts.")
    return value


def study_query(filters: dict[str, str]) -> dict[str, str]:
    """The C-FIND identifier for the given filters (unknown keys are refused, not ignored)."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise QueryError(f"Unknown filter(s) {', '.join(unknown)}; use {', '.join(FILTERS)}.")
    query = {key: "" for key in STUDY_KEYS}
    for key, value in filters.items():
        value = (value or "").strip()
        if not value:
            continue
        if key == "StudyDate":
            value = normalize_study_date(value)
        if key == "Modality":
            key = "ModalitiesInStudy"
        query[key] = value
    return query


def is_narrowed(filters: dict[str, str]) -> bool:
    """Whether the filters name a patient, a date, an accession or a study (a bare "*" names nothing)."""
    return any((filters.get(key) or "").strip().strip("*?") for key in NARROWING)


def capped(studies: list[dict], limit: int) -> dict:
    """The answer body: at most `limit` studies, and when there were more, `more` and a message saying so."""
    shown = studies[:limit]
    body = {"count": len(shown), "total": len(studies), "more": len(studies) > limit, "studies": shown}
    if body["more"]:
        body["message"] = (f"More results than shown: the server matched {len(studies)} studies, the first {limit} "
                           "are shown. Narrow the query (PatientID, StudyDate, Modality) to see the rest.")
    return body


def _plain(value) -> str | int | list:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    if isinstance(value, int):
        return value
    return str(value)


def find_studies(server: DicomServer, filters: dict[str, str], *, timeout: float | None = None) -> list[dict]:
    """C-FIND at study level; each match as a plain dict of STUDY_KEYS. Raises QueryError/DicomError."""
    query = study_query(filters)
    peer = server.as_peer(query_timeout=timeout)
    results = dimse.find(peer, local_ae(), "STUDY", query)
    studies = []
    for ds in results:
        row = {key: _plain(ds[key].value if key in ds else "") for key in STUDY_KEYS}
        if isinstance(row["ModalitiesInStudy"], str):
            row["ModalitiesInStudy"] = [m for m in row["ModalitiesInStudy"].split("\\") if m]
        for key in ("NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
            row[key] = int(row[key]) if str(row[key]).strip().isdigit() else None
        studies.append(row)
    return sorted(studies, key=lambda r: (r["StudyDate"], r["StudyInstanceUID"]))
