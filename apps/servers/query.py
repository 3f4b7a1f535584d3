"""Study-level C-FIND against a configured server, for GET /api/servers/{name}/studies, `manage.py dicom
query` and the admin. The filters and their checks are apps/dicom/query.py's, shared with the case lists.
"""
from __future__ import annotations

from apps.dicom import dimse
from apps.dicom.query import STUDY_KEYS, study_query
from apps.servers.models import DicomServer, local_ae


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
