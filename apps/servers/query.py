"""Study-level C-FIND against a configured server, for GET /api/servers/{name}/studies, `manage.py dicom
query` and the admin. The filters and their checks are apps/dicom/query.py's, shared with the case lists.
"""
from __future__ import annotations

from apps.dicom import dimse
from apps.dicom.query import STUDY_KEYS, study_query
from apps.servers.models import DicomServer, local_ae

# A query with none of these lists every patient of the PACS: it needs the "query without filter" permission.
NARROWING = ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyInstanceUID")
UNFILTERED_REFUSAL = ("A query without PatientID, PatientName, StudyDate, AccessionNumber or StudyInstanceUID "
                      "lists every patient of the server; it needs the permission 'Can query servers without a "
                      "patient, date or accession filter'. Add one of those filters.")


def is_narrowed(filters: dict[str, str]) -> bool:
    """Whether the filters name a patient, a date, an accession or a study (a bare "*" names nothing)."""
    return any((filters.get(key) or "").strip().strip("*?") for key in NARROWING)


def capped(studies: list[dict], limit: int) -> dict:
    """The answer body of find_studies(..., limit=limit): at most `limit` studies, and when the server had
    more (find_studies then returns one more), `more` and a message saying so."""
    shown = studies[:limit]
    body = {"count": len(shown), "more": len(studies) > limit, "studies": shown}
    if body["more"]:
        body["message"] = (f"More results than shown: the first {limit} studies the server answered are shown, "
                           "and it has more. Narrow the query (PatientID, StudyDate, Modality) to see the rest.")
    return body


def _plain(value) -> str | int | list:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    if isinstance(value, int):
        return value
    return str(value)


def find_studies(server: DicomServer, filters: dict[str, str], *, timeout: float | None = None,
                 limit: int | None = None) -> list[dict]:
    """C-FIND at study level; each match as a plain dict of STUDY_KEYS, sorted by date. With `limit`, the
    first limit + 1 matches the server answers (see dimse find). Raises QueryError/DicomError."""
    query = study_query(filters)
    peer = server.as_peer(query_timeout=timeout)
    results = dimse.find(peer, local_ae(), "STUDY", query, limit=limit)
    studies = []
    for ds in results:
        row = {key: _plain(ds[key].value if key in ds else "") for key in STUDY_KEYS}
        if isinstance(row["ModalitiesInStudy"], str):
            row["ModalitiesInStudy"] = [m for m in row["ModalitiesInStudy"].split("\\") if m]
        for key in ("NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
            row[key] = int(row[key]) if str(row[key]).strip().isdigit() else None
        studies.append(row)
    return sorted(studies, key=lambda r: (r["StudyDate"], r["StudyInstanceUID"]))
