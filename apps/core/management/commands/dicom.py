"""manage.py dicom echo|query|retrieve|send-file|send-dir|batch — the command-line tools of the batch download and send/query/retrieve scripts the portal replaces (docs/contracts.md).

Retrievals run as ordinary retrieval jobs (same checks, files, audit and report as the web UI). By
default this process runs them itself, so a script needs no worker cluster; --queue hands them to the
workers instead and follows their progress. C-MOVE needs the receiver (`manage.py receive`) running.
"""
import os
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.dicom import store
from apps.dicom.errors import DicomError
from apps.dicom.peers import LocalAE, RemoteAE
from apps.jobs import runner
from apps.projects.access import project_named
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.retrieval.report import build_report, report_text
from apps.retrieval.results import results_count, results_csv
from apps.sending import intake as sending_intake
from apps.sending.report import report_rows
from apps.servers import query
from apps.servers.models import DicomServer, local_ae


class CaseListPath:
    """A case list on disk as the intake reads an upload: its size first, its bytes only if that is allowed."""

    def __init__(self, path: Path):
        self.path, self.size = path, path.stat().st_size

    def read(self) -> bytes:
        return self.path.read_bytes()


class Command(BaseCommand):
    help = "DICOM tools: echo, query, retrieve, send-file, send-dir, batch."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("echo", help="C-ECHO a configured server")
        p.add_argument("--server", required=True)
        p = sub.add_parser("query", help="study-level C-FIND")
        p.add_argument("--server", required=True)
        p.add_argument("--patient-id", default="")
        p.add_argument("--patient-name", default="")
        p.add_argument("--study-date", default="", help="YYYYMMDD or YYYYMMDD-YYYYMMDD")
        p.add_argument("--modality", default="")
        p = sub.add_parser("retrieve", help="retrieve one study by StudyInstanceUID")
        p.add_argument("--server", required=True)
        p.add_argument("--study-uid", required=True)
        p.add_argument("--output-dir", default="", help="default: DATA_DIR/downloads")
        p.add_argument("--timeout", type=int, default=None)
        for name in ("send-file", "send-dir"):
            p = sub.add_parser(name, help="C-STORE a file or every file under a folder")
            p.add_argument("path", nargs="?")
            p.add_argument("--file" if name == "send-file" else "--dir", dest="path_opt")
            p.add_argument("--server", default="", help="a configured server; or give the PACS with the flags below")
            p.add_argument("--ip", default="127.0.0.1", help="PACS address (without --server)")
            p.add_argument("--port", type=int, default=11112, help="PACS port (without --server)")
            p.add_argument("--pacs-ae-title", default="PACS", help="PACS AE title (without --server)")
            p.add_argument("--ae-title", default="", help="our AE title (default DICOM_AE_TITLE)")
            p.add_argument("--project", default="", help="a research project (with --server): de-identify for it")
        p = sub.add_parser("batch", help="retrieve every row of a case list, or of every list in a folder")
        p.add_argument("source", help="a .csv or .xlsx file, or a folder of them (one job each)")
        p.add_argument("--server", default="", help="server for rows that name none")
        p.add_argument("--timeout", type=int, default=None, help="download timeout per study (s)")
        p.add_argument("--output-dir", default="")
        p.add_argument("--queue", action="store_true", help="run on the worker cluster and follow progress")
        p.add_argument("--project", default="", help="a research project: file the instances de-identified for it")
        p.add_argument("--query-only", action="store_true",
                       help="only C-FIND every row and write what it found (a CSV per list); move nothing")

    def handle(self, *args, action, **opts):
        handler = getattr(self, "do_" + action.replace("-", "_"))
        try:
            handler(**opts)
        except (DicomError, ValueError) as exc:
            raise CommandError(str(exc)) from exc

    def _server(self, name) -> DicomServer:
        try:
            return DicomServer.objects.get(name__iexact=name)
        except DicomServer.DoesNotExist:
            known = ", ".join(DicomServer.objects.values_list("name", flat=True)) or "none configured"
            raise CommandError(f"Unknown server '{name}' (known: {known}).") from None

    def do_echo(self, server, **_):
        server = self._server(server)
        result = server.echo()
        if not result["ok"]:
            raise CommandError(result["error"])
        self.stdout.write(f"C-ECHO {server.name}: OK in {result['elapsed_ms']} ms")

    def do_query(self, server, patient_id, patient_name, study_date, modality, **_):
        filters = {"PatientID": patient_id, "PatientName": patient_name, "StudyDate": study_date, "Modality": modality}
        limit = settings.QUERY_MAX_RESULTS
        studies = query.find_studies(self._server(server), filters, limit=limit)
        for s in studies[:limit]:
            self.stdout.write(f"{s['StudyDate']}  {s['PatientID']:<16} {'/'.join(s['ModalitiesInStudy']):<8} "
                              f"{s['NumberOfStudyRelatedInstances'] or '?':>5} images  {s['StudyInstanceUID']}  "
                              f"{s['StudyDescription']}")
        if len(studies) > limit:
            self.stdout.write(f"More results than shown: the first {limit} studies (QUERY_MAX_RESULTS); "
                              "narrow the query.")
        else:
            self.stdout.write(f"{len(studies)} studies")

    def do_send_file(self, path, path_opt, **opts):
        self._send([Path(path or path_opt or "")], **opts)

    def do_send_dir(self, path, path_opt, **opts):
        folder = Path(path or path_opt or "")
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder.")
        self._send(sorted(p for p in folder.rglob("*") if p.is_file()), **opts)

    def _send(self, paths, *, server, ip, port, pacs_ae_title, ae_title, project="", **_):
        for p in paths:
            if not p.is_file():
                raise CommandError(f"{p} is not a file.")
        if project and (not server or ae_title):
            raise CommandError("--project needs --server (a configured server) and no --ae-title.")
        if server and not ae_title:
            return self._send_job(paths, self._server(server), self._project(project))
        # A PACS not in the database, or another AE title of ours, as the old tool took them: no server row
        # or configured AE a send job could name, so the files go straight through the DICOM layer.
        local = local_ae()
        if ae_title:
            local = LocalAE(ae_title=ae_title, host=local.host, port=local.port)
        peer = self._server(server).as_peer() if server else RemoteAE(ae_title=pacs_ae_title, host=ip, port=port)
        report = store.store_files(peer, local, paths)
        for path, reason in report.failed:
            self.stderr.write(f"FAILED {path}: {reason}")
        self._sent(len(report.stored), len(paths), len(report.warnings), len(report.failed))

    def _project(self, name):
        try:
            return project_named(name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def _send_job(self, paths, server, project=None):
        """A send job run here and now: the same checks, batches, audit and report as the web's sends."""
        source = paths[0] if len(paths) == 1 else Path(os.path.commonpath(paths))
        job = sending_intake.start_send(servers=[server], source=source, root=source if source.is_dir() else
                                        source.parent, description=f"dicom send {source.name}", start=False,
                                        project=project)
        job = runner.run_inline(job)
        failed = [row for row in report_rows(job) if row["outcome"] != "warning"]
        for row in failed:  # a project's report names its files by place or pseudonym, never by path
            where = row["file"] if project else Path(job.source_path) / row["file"]
            self.stderr.write(f"FAILED {where}: {row['reason']}")
        if job.error_summary():
            self.stderr.write(job.error_summary())
        progress = job.progress()
        self._sent(progress["sent"], progress["files"], progress["warnings"],
                   max(len(failed), progress["files"] - progress["sent"]))

    def _sent(self, sent: int, files: int, warnings: int, failed: int):
        self.stdout.write(f"sent {sent} of {files} files ({warnings} with warnings, {failed} failed)")
        if failed:
            sys.exit(1)

    def do_retrieve(self, server, study_uid, output_dir, timeout, **_):
        text = intake.rows_to_csv([{"StudyInstanceUID": study_uid, "Server": self._server(server).name}])
        read = intake.read_case_lists([("retrieve " + study_uid, text)], user=None)
        self._run_jobs(read, timeout, output_dir, queue=False)

    def do_batch(self, source, server, timeout, output_dir, queue, query_only=False, project="", **_):
        src = Path(source)
        files = sorted([*src.glob("*.csv"), *src.glob("*.xlsx")]) if src.is_dir() else [src]
        if not files or not all(f.is_file() for f in files):
            raise CommandError(f"{source}: no case list found (a .csv or .xlsx file, or a folder of them).")
        read = intake.read_case_lists([(f.name, CaseListPath(f)) for f in files], user=None,
                                      default_server=server)
        for case_file in read:
            for error in case_file.case_list.errors if case_file.case_list else []:
                self.stderr.write(f"{case_file.name} {error}")
            if case_file.problem:
                self.stderr.write(f"{case_file.name}: {case_file.problem}")
        self._run_jobs(read, timeout, output_dir, queue=queue, mode="query" if query_only else "retrieve",
                       project=self._project(project))

    def _run_jobs(self, read, timeout, output_dir, *, queue, mode="retrieve", project=None):
        for case_file in (f for f in read if f.runnable):
            name = case_file.name
            job = RetrievalJob.from_case_list(case_file.case_list, user=None, source_name=name, timeout=timeout,
                                              start=False, mode=mode, project=project)
            if output_dir:
                job.output_dir = str(Path(output_dir).resolve())
                job.save(update_fields=["output_dir"])
            if queue:
                job.start()
                while job.status in ("pending", "running"):
                    time.sleep(1)
                    job.refresh_from_db()
                    self._progress(job)
            else:
                job = runner.run_inline(job, on_progress=self._progress)
            self.stdout.write("")
            if mode == "query":
                self._query_results(job, name)
                continue
            report = build_report(job)
            reports = settings.DATA_DIR / "reports"
            reports.mkdir(parents=True, exist_ok=True)
            path = reports / f"failed_downloads_{timezone.now():%Y%m%d_%H%M%S}_job{job.pk}.txt"
            path.write_text(report_text(report), encoding="utf-8")
            s = report["summary"]
            self.stdout.write(f"{name}: {s['succeeded']} of {s['rows']} rows retrieved ({s['success_rate']}%), "
                              f"{s['failed']} failed, {s['timed_out']} timed out, {s['bad_rows']} bad rows. "
                              f"Report: {path}")

    def _query_results(self, job, name):
        """A query job's found studies as a CSV under DATA_DIR/reports, and a line of counts."""
        reports = settings.DATA_DIR / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        path = reports / f"query_results_{timezone.now():%Y%m%d_%H%M%S}_job{job.pk}.csv"
        path.write_text(results_csv(job), encoding="utf-8")
        items = job.items.all()
        self.stdout.write(f"{name}: {results_count(job)} studies found by {items.count()} rows, "
                          f"{items.exclude(flag='').count()} rows flagged, "
                          f"{items.filter(status__in=('failed', 'timed_out')).count()} failed, "
                          f"{len(job.row_errors)} bad rows. Results: {path}")

    def _progress(self, job):
        p = job.progress()
        done = p["total"] - p["pending"] - p["running"]
        width = 30
        filled = int(width * done / p["total"]) if p["total"] else width
        self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{p['total']} rows "
                          f"{p.get('instances', 0)} images {p.get('megabytes', 0)} MB", ending="")
        self.stdout.flush()
