"""The send report: every file that was skipped, failed or stored with a warning, with its reason."""
from __future__ import annotations

import csv
import io

from django.utils import timezone

FIELDS = ("file", "server", "outcome", "reason")


def report_rows(job) -> list[dict]:
    rows = []
    for item in job.items.order_by("batch"):
        result = item.result or {}
        rows += [{"file": f, "server": "", "outcome": "skipped", "reason": r} for f, r in result.get("skipped", [])]
        for server, outcome in sorted(result.get("destinations", {}).items()):
            rows += [{"file": f, "server": server, "outcome": "failed", "reason": r} for f, r in outcome["failed"]]
            rows += [{"file": f, "server": server, "outcome": "warning", "reason": r} for f, r in outcome["warnings"]]
    return rows


def build_report(job) -> dict:
    return {"job": job.pk, "status": job.status, "source": job.shown_folder or job.description,
            "servers": [s.name for s in job.servers.all()], "generated_at": timezone.now().isoformat(timespec="seconds"),
            "summary": job.progress(), "error": job.error_summary(), "files": report_rows(job)}


def report_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(report["files"])
    return out.getvalue()
