"""A query job's results: one line per study found, with the line of the case-list row that found it, as
JSON, CSV or an Excel workbook (the admin's table and GET /api/retrievals/{id}/results)."""
from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from openpyxl import Workbook

from apps.jobs.spreadsheets import inert
from apps.projects.masking import Mask
from apps.retrieval.followup import caselist_text
from apps.retrieval.models import FoundStudy

FIELDS = ("line", "Server", "StudyInstanceUID", "StudyDate", "StudyTime", "ModalitiesInStudy", "StudyDescription",
          "AccessionNumber", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "FoundOn", "ChosenSeries",
          "ChosenInstances")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def found_of(job):
    return FoundStudy.objects.filter(item__job=job).order_by("line", "study_date", "study_time", "study_instance_uid")


def results_count(job) -> int:
    return found_of(job).count()


def as_row(found: FoundStudy) -> dict:
    return {"line": found.line, "Server": found.server_name, "StudyInstanceUID": found.study_instance_uid,
            "StudyDate": found.study_date, "StudyTime": found.study_time, "ModalitiesInStudy": found.modalities,
            "StudyDescription": found.description, "AccessionNumber": found.accession_number,
            "NumberOfStudyRelatedSeries": found.series, "NumberOfStudyRelatedInstances": found.instances,
            # every server the row found it on (it is fetched from Server, the first); a row choosing series:
            # how many of the study's series it chose, and their instances
            "FoundOn": found.found_on or found.server_name, "ChosenSeries": found.chosen_series,
            "ChosenInstances": found.chosen_instances}


def results_rows(job) -> list[dict]:
    """The rows as shown: for a project's query, as the project's files would name the study (the
    originals stay in the database, where "retrieve these" finds them by the project's UID)."""
    if not job.project_id:
        return [as_row(found) for found in found_of(job).iterator(chunk_size=2000)]
    mask = Mask(job.project)
    return [mask.found_study(as_row(found), found.item.patient_id)
            for found in found_of(job).select_related("item").iterator(chunk_size=2000)]


def results_csv(job) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    for row in results_rows(job):
        # a PACS's text (a description, an accession number) reaches a spreadsheet: never as a formula
        writer.writerow({key: inert(value) for key, value in row.items()})
    return out.getvalue()


def results_xlsx(job) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("results")
    sheet.append(FIELDS)
    for row in results_rows(job):
        # openpyxl stores a text starting with '=' as a formula: the same guard as the CSV's
        sheet.append([inert(row[key]) for key in FIELDS])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def results_response(job, output: str) -> HttpResponse:
    """The results as a file download: `output` "csv" or "xlsx"."""
    if output == "xlsx":
        response = HttpResponse(results_xlsx(job), content_type=XLSX)
    else:
        response = HttpResponse(results_csv(job), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="query_results_job{job.pk}.{output}"'
    return response


def caselist_response(job) -> HttpResponse:
    """The failed and flagged rows as a case-list CSV (followup.caselist_text) to download."""
    response = HttpResponse(caselist_text(job), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="retry_job{job.pk}.csv"'
    return response


def masked_found(job, found_studies) -> list[FoundStudy]:
    """A page of a project's found studies as the admin's table shows them: the values results_rows
    gives, set on the rows in memory (shown only, never saved); the tick boxes carry the project's UIDs."""
    mask, shown = Mask(job.project), []
    for found in found_studies:
        row = mask.found_study(as_row(found), found.item.patient_id)
        found.study_instance_uid, found.study_date, found.study_time = (
            row["StudyInstanceUID"], row["StudyDate"], row["StudyTime"])
        found.description, found.accession_number = row["StudyDescription"], row["AccessionNumber"]
        shown.append(found)
    return shown
