"""Turning what a user hands over (uploaded CSV files, JSON rows, a single query form) into jobs.

`read_case_lists` is the one door: the API, the admin upload page and `manage.py dicom batch` all read
lists through it, so the size limit, the decoding, the parsing and the reasons a whole file is refused
are the same everywhere."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from django.conf import settings

from apps.jobs.models import ItemStatus
from apps.jobs.queue import enqueue
from apps.retrieval import extensions
from apps.retrieval.caselist import COLUMNS, CaseList, decode, parse_case_list
from apps.retrieval.models import RetrievalJob, row_errors
from apps.retrieval.spreadsheet import case_list_bytes
from apps.servers.models import DicomServer

MAX_CASE_LIST_BYTES = 5 * 1024 * 1024
PREPARE_CHUNK_ROWS = 2000
FIRST_CHUNK_ROWS = 100


@dataclass
class CaseListFile:
    """One case list as read: its name, its bytes, the parsed rows, and `problem` when the whole file
    is refused (too large, not UTF-8 text, no row that can run)."""

    name: str
    content: bytes
    case_list: CaseList | None
    problem: str = ""

    @property
    def runnable(self) -> bool:
        return not self.problem


def read_case_list(data: bytes | str, *, user, default_server: str = "") -> CaseList:
    """Parse with the configured servers; rows naming a server this user may not retrieve from are bad rows
    with the reason. `user` None is the portal itself (the command line). Raises ValueError for a file that
    is not UTF-8 text."""
    servers = list(DicomServer.objects.prefetch_related("retrieve_groups", "query_groups"))
    refused = {s.name: s.refusal("retrieve") for s in servers if not s.may(user, "retrieve")}
    # '*': every server this user may query and retrieve from, in a stable order (names, case-insensitively)
    everywhere = sorted((s.name for s in servers if s.name not in refused and s.may(user, "query")),
                        key=lambda name: (name.casefold(), name))
    return parse_case_list(data, {s.name for s in servers}, default_server=default_server, refused=refused,
                           everywhere=everywhere)


def read_case_lists(sources, *, user, default_server: str = "") -> list[CaseListFile]:
    """`sources`: (name, bytes or an uploaded file) pairs. Every file is read (an upload's size is checked
    before its content is read) and parsed for this user (see read_case_list); each comes back with its rows
    or with why it is refused."""
    read = []
    for name, source in sources:
        size = len(source) if isinstance(source, (bytes, str)) else source.size
        if size > MAX_CASE_LIST_BYTES:
            read.append(CaseListFile(name, b"", None, f"{size} bytes is over the {MAX_CASE_LIST_BYTES} byte "
                                                      "limit for a case list; split it into several files."))
            continue
        content = source if isinstance(source, bytes) else (source.encode() if isinstance(source, str)
                                                             else source.read())
        try:
            content = case_list_bytes(content)  # an .xlsx workbook becomes the CSV it holds
            case_list = read_case_list(content, user=user, default_server=default_server)
        except ValueError as exc:
            read.append(CaseListFile(name, content, None, str(exc)))
            continue
        read.append(CaseListFile(name, content, case_list, "" if case_list.rows else _nothing_to_run(content, case_list)))
    return read


def _nothing_to_run(content: bytes, case_list: CaseList) -> str:
    try:
        empty = not decode(content).strip()
    except ValueError:  # a spreadsheet: its rows were read from its cells
        empty = not content
    if empty:
        return "no row can be run: the file is empty."
    if not case_list.errors:
        return "no row can be run: the file holds no case rows (only a header, comments or blank lines)."
    return "no row can be run."


def rows_to_csv(rows: list[dict]) -> str:
    """JSON rows ({"PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID"}, and any of the optional
    columns) as a case list
    with a header, so they pass through exactly the same checks as an uploaded file."""
    out = io.StringIO()
    writer = csv.writer(out)
    # the optional columns (MaxStudies, AccessionNumber, the Series ones) only when a row uses them: a row's text stays as it was
    columns = COLUMNS[:5] + tuple(col for col in COLUMNS[5:] if any(row.get(col) for row in rows))
    writer.writerow(columns)
    for row in rows:
        writer.writerow([str(row.get(col, "") or "") for col in columns])
    return out.getvalue()


def start_jobs(files: list[CaseListFile], *, user, timeout: int | None = None,
               default_server: str = "", mode: str = RetrievalJob.Mode.RETRIEVE, project=None,
               **attached) -> list[RetrievalJob]:
    """One job per runnable file. A list longer than RETRIEVAL_INLINE_ROWS gets its rows created in the
    background (the job shows "preparing" meanwhile), so the upload answers at once however long it is.
    `attached`: options of registered attachments by name (apps/retrieval/extensions.py), each run for
    each job as it is created. `mode` "query" makes query jobs: the rows only look (C-FIND) and record
    what they found; nothing is moved, so nothing is attached. With `project`, the instances are filed
    de-identified for it."""
    jobs = []
    for f in files:
        if not f.runnable:
            continue
        text = decode(f.content) if len(f.case_list.rows) > settings.RETRIEVAL_INLINE_ROWS else ""
        jobs.append(RetrievalJob.from_case_list(f.case_list, user=user, source_name=f.name, timeout=timeout,
                                                text=text, default_server=default_server, mode=mode,
                                                project=project))
        if mode == RetrievalJob.Mode.QUERY:
            continue
        extensions.attach([jobs[-1]], attached, user, lines=[row.line for row in f.case_list.rows])
    return jobs


def prepare(job: RetrievalJob, chunk: int = PREPARE_CHUNK_ROWS) -> None:
    """Create the rows of a list uploaded for the background, a chunk at a time; the first chunk starts
    at once, so the first row is under way while the rest is written. A cancel that arrives meanwhile
    makes the remaining rows canceled (the report stays complete). Re-running it after a crash
    creates only the rows still missing."""
    # read again for the job's owner, as the upload was: servers they may not retrieve from stay refused
    case_list = read_case_list(job.case_list_text, user=job.created_by, default_server=job.default_server)
    type(job).objects.filter(pk=job.pk).update(row_errors=row_errors(case_list))
    done = set(job.items.values_list("line", flat=True))
    rows = [r for r in case_list.rows if r.line not in done]
    # a small first chunk, so the first rows are under way within moments of the upload
    bounds = [0, *range(min(FIRST_CHUNK_ROWS, len(rows)), len(rows), chunk), len(rows)]
    for start, end in zip(bounds, bounds[1:]):
        if type(job).objects.filter(pk=job.pk, cancel_requested=True).exists():
            job.create_items(rows[start:], status=ItemStatus.CANCELED, error="Canceled before it started.")
            break
        job.create_items(rows[start:end])
        if start == 0:
            job.start(job.created_by)
    type(job).objects.filter(pk=job.pk).update(preparing=False, case_list_text="")
    job.preparing, job.case_list_text = False, ""
    if not job.items.filter(status=ItemStatus.RUNNING).exists():
        # the workers ran out of rows before the last chunk came (a running one goes on to them)
        enqueue(job)
    job.refresh_status()
