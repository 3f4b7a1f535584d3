"""What the admin's home page shows and refreshes every few seconds: each part's health, the jobs running
and waiting with their progress and why they wait, instances per hour over the last day by app, what
needs a person, and the free space of each data folder. Jobs follow the job access rule (a user sees
their own, holders of "view all jobs" every one); nothing here names a patient."""
from __future__ import annotations

import shutil
from datetime import timedelta

from django.apps import apps
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.core.health import portal_health, supervised_parts
from apps.jobs import diskspace
from apps.jobs.access import visible_jobs
from apps.jobs.holds import item_models, job_models
from apps.jobs.models.base import JobStatus

HOURS = 24
ACTIVE_LIMIT = 20  # jobs listed as running or waiting
ATTENTION_LIMIT = 10  # failures listed
PARTS = ("web", "workers", "receiver", "inbox-watcher")


def snapshot(user, now=None) -> dict:
    now = now or timezone.now()
    return {"at": now.isoformat(), "health": health(), "jobs": active_jobs(user),
            "throughput": throughput(now), "attention": attention(user, now), "disk": disk()}


def health() -> list[dict]:
    """One entry per part: its state, restarts and problem in words. The web answered this request, so it
    is up; the other parts are known when `runportal` supervises them here (apps/dicom/supervisor.py),
    and /healthz's own findings (a stuck worker, a full receiver, the database) are added to them."""
    supervised = supervised_parts()
    states = portal_health()[1].get("parts", {})
    names = list(PARTS) + [n for n in [*supervised, *states] if n not in PARTS]
    rows = []
    for name in dict.fromkeys(names):
        part = supervised.get(name, {})
        state = "up" if name == "web" else states.get(name) or ("up" if part.get("up") else
                                                                 "down" if part else "not supervised here")
        rows.append({"name": name, "state": state, "restarts": part.get("restarts", 0),
                     "problem": part.get("problem") or ""})
    return rows


def _admin_link(obj) -> str:
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return ""


def _app(model) -> str:
    return apps.get_app_config(model._meta.app_label).verbose_name


def active_jobs(user) -> list[dict]:
    """Running and waiting jobs, urgent first, then oldest first."""
    found = []
    for model in job_models():
        jobs = visible_jobs(model.objects.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]), user)
        found += list(jobs.order_by("-urgent", "created_at")[:ACTIVE_LIMIT])
    found.sort(key=lambda job: (not job.urgent, job.created_at))
    rows = []
    for job in found[:ACTIVE_LIMIT]:
        progress = job.progress()
        rows.append({"app": _app(job), "job": str(job), "description": job.description, "status": job.status,
                     "state": job.state(), "urgent": job.urgent, "paused": job.paused, "link": _admin_link(job),
                     "total": progress["total"],
                     "done": progress["total"] - progress["pending"] - progress["running"],
                     "failed": progress["failed"] + progress["timed_out"]})
    return rows


def throughput(now) -> dict:
    """Instances per hour over the last HOURS hours by app: {"hours": [iso, ...], "apps": {app: [n, ...]}}.
    Counts every account's work: the figure says how busy the portal is, not whose work it was."""
    start = (now - timedelta(hours=HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=h) for h in range(HOURS)]
    by_app: dict[str, list[int]] = {}
    for model in item_models():
        finished = model.instances_finished(start)
        if not finished:
            continue
        counts = by_app.setdefault(_app(model), [0] * HOURS)
        for at, instances in finished:
            slot = int((at - start).total_seconds() // 3600)
            if 0 <= slot < HOURS:
                counts[slot] += instances or 0
    return {"hours": [h.isoformat() for h in hours], "apps": by_app}


def attention(user, now) -> list[dict]:
    """Jobs of the last day that ended failed or partial, newest first, with the first error."""
    since = now - timedelta(hours=HOURS)
    found = []
    for model in job_models():
        ended = visible_jobs(model.objects.filter(status__in=[JobStatus.FAILED, JobStatus.PARTIAL],
                                                  completed_at__gte=since), user)
        found += list(ended.order_by("-completed_at")[:ATTENTION_LIMIT])
    found.sort(key=lambda job: job.completed_at, reverse=True)
    rows = []
    for job in found[:ATTENTION_LIMIT]:
        first = job.items.filter(status__in=["failed", "timed_out"]).exclude(error="").order_by("pk").first()
        rows.append({"app": _app(job), "job": str(job), "status": job.status, "link": _admin_link(job),
                     "completed_at": job.completed_at.isoformat(), "error": first.error if first else ""})
    return rows


def disk() -> list[dict]:
    """Free space per data folder (the nearest existing parent when the folder is not made yet)."""
    rows = []
    for name in diskspace.FOLDERS:  # the folders that have a floor (MIN_FREE_GB)
        where = diskspace.folder_path(name)
        while not where.exists() and where != where.parent:
            where = where.parent
        usage = shutil.disk_usage(where)
        rows.append({"folder": name, "free_bytes": usage.free, "total_bytes": usage.total,
                     "required_bytes": diskspace.required_bytes(name),
                     "used_fraction": round(1 - usage.free / usage.total, 3) if usage.total else 0})
    return rows
