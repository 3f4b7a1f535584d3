"""The admin's retention page: the dry run, per kind, for those who may view all jobs."""
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from apps.core import retention

SHOWN = 200  # entries listed per kind; the count covers all
RULES = {"inbox-archives": "RETENTION_INBOX_ARCHIVE_DAYS", "quarantine": "RETENTION_QUARANTINE_DAYS",
         "delivered-downloads": "RETENTION_DELIVERED_DAYS", "reports": "RETENTION_REPORTS_DAYS",
         "job-records": "RETENTION_JOBS_DAYS"}


def rule(name: str) -> str:
    if name == "incomplete-uploads":
        return f"UPLOAD_EXPIRE_HOURS = {settings.UPLOAD_EXPIRE_HOURS:g}"
    days = getattr(settings, RULES[name])
    return f"{RULES[name]} = {days}" + (" (kept for ever)" if days <= 0 else "")


def retention_view(request):
    if not request.user.has_perm("jobs.view_all_jobs"):
        raise PermissionDenied
    candidates = retention.plan()
    groups = []
    for category in retention.categories():
        mine = [c for c in candidates if c.category == category.name]
        groups.append({"name": category.name, "count": len(mine), "rule": rule(category.name),
                       "megabytes": round(sum(c.bytes for c in mine) / 10 ** 6, 1),
                       "entries": [{**vars(c), "megabytes": round(c.bytes / 10 ** 6, 2)} for c in mine[:SHOWN]],
                       "more": max(0, len(mine) - SHOWN)})
    context = {**admin.site.each_context(request), "title": "Retention: what will be removed", "groups": groups}
    return TemplateResponse(request, "admin/core/retention.html", context)
