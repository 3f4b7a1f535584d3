"""E-mail when a job ends, to its owner when they asked: per job (`"notify": true` in the create body,
which, like "urgent", marks every job the request creates: apps/jobs/api/views.py) or for all their jobs
(their MailPreference). One message per job end, whichever worker derived the end: the JobMail row's
unique key lets one process send it.

The message carries the job's kind and number, its status, its numeric counters and a link to its page:
never its description (typed by a user, it may name a patient), item errors or paths."""
import contextvars
import logging

from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse

from apps.audit import target_label
from apps.notify import mail
from apps.notify.models import JobMail, MailPreference

log = logging.getLogger("apps.jobs")
_notify = contextvars.ContextVar("notify_jobs", default=False)


def begin(notify: bool) -> contextvars.Token:
    """Every job created until end() asks for its end e-mail (a create request's "notify": true)."""
    return _notify.set(notify)


def end(token: contextvars.Token) -> None:
    _notify.reset(token)


def requested() -> bool:
    return _notify.get()


def wanted(job) -> bool:
    owner = job.created_by
    if owner is None or not owner.is_active or not owner.email:
        return False
    return job.notify or MailPreference.wants_job_mail(owner)


def job_link(job) -> str:
    try:
        return mail.link(reverse(f"admin:{job._meta.app_label}_{job._meta.model_name}_change", args=[job.pk]))
    except NoReverseMatch:
        return mail.link("/admin/")


def message(job) -> tuple[str, str]:
    """(subject, body): counts only, named by fixed words."""
    kind = job._meta.verbose_name
    subject = f"[PACS Portal] {kind} #{job.pk} ended: {job.status}"
    counts = [(key, value) for key, value in job.progress().items()
              if isinstance(value, (int, float)) and not isinstance(value, bool)]
    lines = [f"Your {kind} #{job.pk} ended with the status \"{job.status}\".", ""]
    lines += [f"  {key.replace('_', ' ')}: {value}" for key, value in counts]
    lines += ["", f"Details: {job_link(job)}"]
    return subject, "\n".join(lines)


def on_job_refreshed(sender, job, **kwargs) -> None:
    """job_refreshed's receiver: mail a job that has just ended, once."""
    if job.completed_at is None or not wanted(job):
        return
    try:
        with transaction.atomic():
            JobMail.objects.create(job=target_label(job), ended_at=job.completed_at)
    except IntegrityError:
        return  # this end was mailed (or is being mailed) by another process
    subject, body = message(job)
    recipient = job.created_by.email
    transaction.on_commit(lambda: mail.send([recipient], subject, body))
