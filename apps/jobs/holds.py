"""What holds a pending item back: its job paused, its app paused (AppPause), or a check another room
registered (apps/jobs/registry.add_check: a paused server, a server's closed window). A held item stays
pending with `waiting` saying why and no queue mark (queued_at is None), so no worker claims it and no
sweep re-queues it; wake() puts the held items back on the queue when the cause may be gone (a resume, and
the minute schedule for windows), and a hold that still applies is found again at the next claim."""
from dataclasses import dataclass, field

from django.apps import apps
from django.db import transaction

from apps.jobs import registry
from apps.jobs.models import AppPause, ItemStatus, Job, JobItem
from apps.jobs.models.base import JOB_PAUSED
from apps.jobs.queue import enqueue

REASON_LENGTH = 200


@dataclass(frozen=True)
class Hold:
    reason: str  # in words a user understands: "waiting for the window of LK, opens at 20:00"
    same: dict = field(default_factory=dict)  # lookups of the job's other pending items held with it; {}: all


def job_models() -> list[type[Job]]:
    return [m for m in apps.get_models() if issubclass(m, Job)]


def item_models() -> list[type[JobItem]]:
    return [m for m in apps.get_models() if issubclass(m, JobItem)]


def app_paused_reason(app_label: str) -> str:
    return f"Paused: all {app_name(app_label)} are paused by an operator."


def app_name(app_label: str) -> str:
    return apps.get_app_config(app_label).verbose_name.lower()


def hold_for(item) -> Hold | None:
    """Why `item` (loaded with its job, just claimed) may not start now; None when it may."""
    if item.job.paused:
        return Hold(JOB_PAUSED)
    if AppPause.objects.filter(app_label=item._meta.app_label).exists():
        return Hold(app_paused_reason(item._meta.app_label))
    for check in registry.CHECKS:
        hold = check(item)
        if hold is not None:
            return hold
    return None


def hold_back(model, job_id: int, hold: Hold) -> int:
    """Mark the job's pending items `hold.same` selects as waiting for `hold.reason` (no longer queued)."""
    return model.objects.filter(job_id=job_id, status=ItemStatus.PENDING, **hold.same).update(
        waiting=hold.reason[:REASON_LENGTH], queued_at=None)


def wake(job=None) -> int:
    """Put held items back on the queue: `job`'s, or every job's whose cause may be gone (not the jobs
    paused themselves, nor those of a paused app). Returns how many items were released."""
    paused_apps = set(AppPause.objects.values_list("app_label", flat=True))
    released = 0
    for model in item_models():
        if model._meta.app_label in paused_apps and job is None:
            continue
        held = model.objects.filter(status=ItemStatus.PENDING).exclude(waiting="")
        job_model = model._meta.get_field("job").related_model
        if job is not None:
            if not isinstance(job, job_model):
                continue
            jobs = [job]
        else:
            job_ids = held.order_by().values_list("job_id", flat=True).distinct()
            jobs = job_model.objects.filter(pk__in=job_ids, paused=False, cancel_requested=False)
        for each in jobs:
            with transaction.atomic():
                count = held.filter(job_id=each.pk).update(waiting="")
                if count:
                    enqueue(each, model.objects.filter(job_id=each.pk, status=ItemStatus.PENDING, waiting=""))
            released += count
    return released


def pause_app(app_label: str, user=None) -> int:
    """Hold every pending item of the app's jobs now; running items finish. Returns the items held."""
    AppPause.objects.get_or_create(app_label=app_label, defaults={"paused_by": user})
    held = 0
    for model in item_models():
        if model._meta.app_label == app_label:
            held += model.objects.filter(status=ItemStatus.PENDING).update(
                waiting=app_paused_reason(app_label)[:REASON_LENGTH], queued_at=None)
    return held


def resume_app(app_label: str) -> int:
    AppPause.objects.filter(app_label=app_label).delete()
    return wake()


def job_apps() -> list[str]:
    """The labels of the apps that have jobs, in a stable order."""
    return sorted({m._meta.app_label for m in item_models()})
