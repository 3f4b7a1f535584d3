"""The failed-downloads report of a batch retrieval: succeeded studies, failures with reason, timed out (for
manual follow-up), rows refused when the list was read, and the overall success rate."""
from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from django.utils import timezone

from apps.jobs.models import ItemStatus
from apps.jobs.spreadsheets import inert
from apps.projects.masking import Mask

FIELDS = ("line", "PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID", "expected", "instances",
          "path", "reason", "text", "attempts")


def attempts_text(item) -> str:
    """What each run of the row fetched ("1: 1500 fetched, 12.3 MB; 2: 500 fetched, 1500 kept, 4.1 MB")."""
    runs = item.result.get("attempts", []) if isinstance(item.result, dict) else []
    return "; ".join(f"{run.get('attempt')}: {run.get('fetched', 0)} fetched"
                     + (f", {run['kept']} kept" if run.get("kept") else "")
                     + f", {run.get('bytes', 0) / 1e6:.1f} MB" for run in runs if isinstance(run, dict))


def _row(item, mask: Mask | None = None) -> dict:
    row = {"line": item.line, "PatientID": item.patient_id, "StudyDate": item.study_date,
           "Modality": item.modality, "Server": item.server_name, "StudyInstanceUID": item.study_instance_uid,
           "expected": item.expected, "instances": item.instances, "path": item.path, "reason": item.error,
           "attempts": attempts_text(item)}
    # a project's report names pseudonyms, the project's UIDs and shifted dates: never an original
    return mask.retrieval_row(row, item.patient_id, item.study_date) if mask else row


def build_report(job) -> dict:
    items = list(job.items.order_by("line"))
    mask = Mask(job.project) if job.project_id else None
    by_status: dict[str, list[dict]] = {}
    for item in items:
        by_status.setdefault(item.status, []).append(_row(item, mask))
    bad_rows = [{"line": e["line"], "text": e["text"], "reason": e["message"]} for e in job.row_errors]
    if mask:
        bad_rows = [mask.retrieval_row(row, "", "") for row in bad_rows]
    total = len(items) + len(bad_rows)
    succeeded = by_status.get(ItemStatus.SUCCEEDED, [])
    return {
        "job": job.pk,
        "status": job.status,
        "source": job.source_name,
        "generated_at": timezone.now().isoformat(timespec="seconds"),
        "succeeded": succeeded,
        "failed": by_status.get(ItemStatus.FAILED, []),
        "timed_out": by_status.get(ItemStatus.TIMED_OUT, []),
        "canceled": by_status.get(ItemStatus.CANCELED, []),
        "not_finished": by_status.get(ItemStatus.PENDING, []) + by_status.get(ItemStatus.RUNNING, []),
        "bad_rows": bad_rows,
        "summary": {
            "rows": total, "succeeded": len(succeeded),
            "failed": len(by_status.get(ItemStatus.FAILED, [])),
            "timed_out": len(by_status.get(ItemStatus.TIMED_OUT, [])),
            "canceled": len(by_status.get(ItemStatus.CANCELED, [])),
            "bad_rows": len(bad_rows),
            "success_rate": round(100.0 * len(succeeded) / total, 1) if total else 0.0,
        },
    }


def report_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=("outcome",) + FIELDS, extrasaction="ignore")
    writer.writeheader()
    for outcome in ("failed", "timed_out", "bad_rows", "canceled", "not_finished", "succeeded"):
        for row in report[outcome]:
            writer.writerow({key: inert(value) for key, value in {"outcome": outcome, **row}.items()})
    s = report["summary"]
    out.write(f"# success rate {s['success_rate']}% ({s['succeeded']} of {s['rows']} rows)\n")
    return out.getvalue()


def report_text(report: dict) -> str:
    """The batch download tool's failed_downloads_<timestamp>.txt, for the CLI."""
    s = report["summary"]
    lines = [f"Retrieval job #{report['job']} ({report['source']}) — report of {report['generated_at']}",
             f"Rows: {s['rows']}  succeeded: {s['succeeded']}  failed: {s['failed']}  timed out: {s['timed_out']}"
             f"  bad rows: {s['bad_rows']}  success rate: {s['success_rate']}%", ""]
    sections = (("FAILED", "failed"), ("TIMED OUT (retry by hand, or with a longer --timeout)", "timed_out"),
                ("BAD ROWS (not run)", "bad_rows"), ("CANCELED", "canceled"), ("SUCCEEDED", "succeeded"))
    for title, key in sections:
        if not report[key]:
            continue
        lines.append(f"{title}: {len(report[key])}")
        for row in report[key]:
            if key == "bad_rows":
                lines.append(f"  line {row['line']}: {row['text'].strip()} — {row['reason']}")
            elif key == "succeeded":
                lines.append(f"  line {row['line']}: {row['Server']} {row['PatientID']} {row['StudyDate']} "
                             f"{row['Modality']} — {row['instances']} instances in {row['path']}"
                             + (f" (runs: {row['attempts']})" if ";" in row.get("attempts", "") else ""))
            else:
                lines.append(f"  line {row['line']}: {row['Server']} {row['PatientID']} {row['StudyDate']} "
                             f"{row['Modality']} {row['StudyInstanceUID']} — {row['reason']}")
        lines.append("")
    return "\n".join(lines)


def report_csv_response(job) -> HttpResponse:
    """The report as the CSV file download the admin and `?output=csv` offer."""
    response = HttpResponse(report_csv(build_report(job)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="failed_downloads_job{job.pk}.csv"'
    return response
