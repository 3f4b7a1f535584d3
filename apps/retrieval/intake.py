"""Turning what a user hands over (uploaded CSV files, JSON rows, a single query form) into jobs.
Shared by the API, the admin upload page and `manage.py dicom batch`, so all three read lists alike."""
from __future__ import annotations

import csv
import io

from apps.retrieval.caselist import COLUMNS, CaseList, parse_case_list
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer


def read_case_list(data: bytes | str, *, user, default_server: str = "") -> CaseList:
    """Parse with the configured servers; rows naming a server this user may not retrieve from are bad rows
    with the reason. `user` None is the portal itself (the command line). Raises ValueError for a file that
    is not UTF-8 text."""
    servers = list(DicomServer.objects.prefetch_related("retrieve_groups"))
    refused = {s.name: s.refusal("retrieve") for s in servers if not s.may(user, "retrieve")}
    return parse_case_list(data, {s.name for s in servers}, default_server=default_server, refused=refused)


def rows_to_csv(rows: list[dict]) -> str:
    """JSON rows ({"PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID"}) as a case list
    with a header, so they pass through exactly the same checks as an uploaded file."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([str(row.get(col, "") or "") for col in COLUMNS])
    return out.getvalue()


def start_job(case_list: CaseList, *, user, source_name: str, timeout: int | None = None) -> RetrievalJob:
    return RetrievalJob.from_case_list(case_list, user=user, source_name=source_name, timeout=timeout)
