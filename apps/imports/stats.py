"""The detailed statistics of one import: the status counters, per-patient numbers, failures grouped."""
from __future__ import annotations

from django.db.models import Count, Q, Sum

from apps.imports.models import FileOutcome, ImportJob

Outcome = FileOutcome.Outcome
EXAMPLES_PER_REASON = 5
REASONS_LISTED = 100  # the commonest; a tree of files each broken its own way stays a short answer


def job_stats(job: ImportJob) -> dict:
    per_patient = (job.outcomes.exclude(patient=None).order_by("patient__patient_id")
                   .values("patient__patient_id", "patient__name", "patient__first_job")
                   .annotate(new_images=Sum("files", filter=Q(outcome=Outcome.IMPORTED), default=0),
                             duplicate_images=Sum("files", filter=Q(outcome=Outcome.DUPLICATE), default=0)))
    reasons = (job.outcomes.filter(outcome=Outcome.FAILED).order_by().values("reason")
               .annotate(count=Count("pk")).order_by("-count", "reason"))
    failures = []
    for row in reasons[:REASONS_LISTED]:
        examples = job.outcomes.filter(outcome=Outcome.FAILED, reason=row["reason"]).order_by("path")
        failures.append({"reason": row["reason"], "count": row["count"],
                         "files": list(examples.values_list("path", flat=True)[:EXAMPLES_PER_REASON])})
    return {
        "task_id": job.task_id,
        "status": job.status,
        "progress": job.counts(),
        "patients": [{"patient_id": row["patient__patient_id"], "name": row["patient__name"],
                      "created_by_this_import": row["patient__first_job"] == job.pk,
                      "new_images": row["new_images"], "duplicate_images": row["duplicate_images"]}
                     for row in per_patient],
        "failures_by_reason": failures,
        "not_used_by_scan": list(job.scan_errors),
        "notes": job.notes(),
    }
