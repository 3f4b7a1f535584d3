"""What follows a job: "retrieve these" (a query job's found studies become a retrieval job by
StudyInstanceUID, on the server each was found on) and "fix and retry" (a job's failed and flagged rows as
a case list in the upload's own format)."""
from __future__ import annotations

import csv
import io

from django.db.models import Q

from apps.jobs.models import ItemStatus
from apps.jobs.spreadsheets import inert
from apps.projects.masking import Mask
from apps.retrieval import intake
from apps.retrieval.caselist import COLUMNS, SERIES_COLUMNS
from apps.retrieval.models import FoundStudy, RetrievalJob

RETRY_STATUSES = (ItemStatus.FAILED, ItemStatus.TIMED_OUT, ItemStatus.CANCELED)


class FollowUpRefused(ValueError):
    """The request names something the job cannot give; the message says what."""


SERIES_FIELDS = ("item__series_description", "item__series_modality", "item__series_instance_uid")


def chosen_studies(job: RetrievalJob, uids: list[str] | None) -> list[tuple]:
    """(server, StudyInstanceUID, the row's series choice) of the studies to retrieve, in line order, each once
    (the first row that found it): all the query found, or the ones `uids` names; a UID it did not find is
    refused."""
    if job.mode != RetrievalJob.Mode.QUERY:
        raise FollowUpRefused(f"job {job.pk} is not a query job: only a query job's found studies can be retrieved")
    found = list(FoundStudy.objects.filter(item__job=job).order_by("line", "pk")
                 .values_list("server_name", "study_instance_uid", *SERIES_FIELDS))
    if uids is not None:
        # A study is named as the job showed it: a project's query showed the project's UIDs only, and
        # the originals they stand for (kept here, never shown) are what the PACS is asked for.
        recipe = job.project.recipe() if job.project_id else None
        original_of = {(recipe.uid(uid) if recipe else uid): uid for _, uid, *_ in found}
        unknown = [uid for uid in uids if uid not in original_of]
        if unknown:
            raise FollowUpRefused(f"StudyInstanceUID {', '.join(unknown[:5])} was not found by query job {job.pk}"
                                  + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""))
        wanted = {original_of[uid] for uid in uids}
        found = [row for row in found if row[1] in wanted]
    chosen, seen = [], set()
    for row in found:
        if row not in seen:
            seen.add(row)
            chosen.append(row)
    if not chosen:
        raise FollowUpRefused(f"query job {job.pk} found no study to retrieve")
    return chosen


def retrieve_found(job: RetrievalJob, *, user, uids: list[str] | None = None, timeout: int | None = None
                   ) -> RetrievalJob:
    """A new retrieval job, owned by `user`, of exactly the studies chosen (see chosen_studies), each from the
    server it was found on first, with the series its row chose. The list goes through the one intake, so
    the user's access to each server is checked as for an upload."""
    rows = [{"StudyInstanceUID": uid, "Server": server, "SeriesDescription": description,
             "SeriesModality": modality, "SeriesInstanceUID": series}
            for server, uid, description, modality, series in chosen_studies(job, uids)]
    (read,) = intake.read_case_lists([(f"studies found by query job {job.pk}", intake.rows_to_csv(rows))],
                                     user=user)
    if not read.runnable or read.case_list.errors:
        errors = read.case_list.errors if read.case_list else []
        raise FollowUpRefused("; ".join(str(e) for e in errors) or read.problem)
    # the query's project goes with what it found: a project's query never turns into identified files
    (started,) = intake.start_jobs([read], user=user, timeout=timeout, project=job.project)
    RetrievalJob.objects.filter(pk=started.pk).update(query_job=job)
    started.query_job = job
    return started


def retry_rows(job: RetrievalJob):
    """The rows a user should fix and run again: failed, timed out or canceled, and flagged query rows."""
    return job.items.filter(Q(status__in=RETRY_STATUSES) | ~Q(flag="")).order_by("line")


def caselist_text(job: RetrievalJob) -> str:
    """The failed and flagged rows as a case list with a header, ready to edit and upload again. A '#'
    comment line above each row says why it is here (the parser skips comments). The series columns are
    there when a row uses them. A project's job shows no original here either (its rows may be a query's
    studies the caller never saw): the rows name the pseudonym, the project's UIDs and shifted dates, and
    the accession number not at all; such a job's failed rows run again with its retry, which keeps the
    originals on the server."""
    rows = list(retry_rows(job))
    series = any(item.chooses_series() for item in rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS if series else COLUMNS[:len(COLUMNS) - len(SERIES_COLUMNS)])
    mask = Mask(job.project) if job.project_id else None
    if mask is not None:
        out.write(f"# research project {job.project.name}: the values below are the project's, not the "
                  "originals; retry the job to run these rows again\n")
    for item in rows:
        why = " ".join((item.flag or item.error or item.status).split())
        patient_id, date, uid, accession, series_uid = (item.patient_id, item.study_date, item.study_instance_uid,
                                                        item.accession_number, item.series_instance_uid)
        if mask is not None:
            why = mask.text(why, [item.patient_id], [item.study_date])
            patient_id, date = mask.pseudonym(item.patient_id), mask.date(item.study_date, item.patient_id)
            uid, accession, series_uid = mask.uid(uid), "", mask.uid(series_uid)
        out.write(f"# line {item.line}: {why}\n")
        values = [patient_id, date, item.modality, item.server_name, uid,
                  "" if item.max_studies is None else item.max_studies, accession]
        if series:
            values += [item.series_description, item.series_modality, series_uid]
        writer.writerow([inert(value) for value in values])
    return out.getvalue()
