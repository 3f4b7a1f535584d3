"""The kinds of retention that remove database rows: tus uploads never completed (past their expiry, as the
hourly delivery sweep removes them too) and finished job records. A job record goes with everything that
cascades from it (its items, their outcomes), deleted RETENTION_DELETE_BATCH rows per transaction, children
before parents, and rows that only point at it (SET_NULL) let go in batches as well: no single transaction
ever holds a 100,000-row delete."""
from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.retention.candidate import Candidate
from apps.delivery.cleanup import expired_uploads
from apps.delivery.models import Upload
from apps.jobs.holds import job_models
from apps.jobs.models import Job
from apps.jobs.models.base import JOB_DONE

DAY = 86400.0


class IncompleteUploads:
    name = "incomplete-uploads"

    def candidates(self) -> list[Candidate]:
        now = timezone.now()
        return [Candidate(self.name, f"upload:{upload.pk}", f"upload {upload.pk} (incomplete, expired)",
                          (now - upload.created_at).total_seconds() / DAY, upload.offset)
                for upload in expired_uploads()]

    def remove(self, candidate: Candidate) -> None:
        upload = Upload.objects.filter(pk=candidate.key.removeprefix("upload:")).first()
        if upload is not None:
            upload.discard()


def needed_by_active_jobs(model) -> set[int]:
    """Ids of `model` jobs another job still running, pending or paused points at (a delivery of a retrieval,
    a retrieval of a query job's findings)."""
    needed = set()
    for relation in reverse_relations(model):
        other = relation.related_model
        if not issubclass(other, Job):
            continue
        field = relation.field
        active = other._base_manager.filter(~Q(status__in=JOB_DONE) | Q(paused=True))
        needed |= set(active.exclude(**{f"{field.attname}__isnull": True}).values_list(field.attname, flat=True))
    return needed


class JobRecords:
    name = "job-records"

    def candidates(self) -> list[Candidate]:
        days = settings.RETENTION_JOBS_DAYS
        if days <= 0:
            return []
        cutoff, now, found = timezone.now() - timezone.timedelta(days=days), timezone.now(), []
        for model in job_models():
            old = (model._base_manager.filter(status__in=JOB_DONE, paused=False, completed_at__lt=cutoff)
                   .exclude(pk__in=needed_by_active_jobs(model)).annotate(rows=models.Count("items")))
            for job in old.order_by("completed_at", "pk"):
                found.append(Candidate(self.name, f"{model._meta.label}:{job.pk}",
                                       f"{model._meta.verbose_name} #{job.pk}, finished {job.completed_at:%Y-%m-%d}",
                                       (now - job.completed_at).total_seconds() / DAY, rows=job.rows + 1))
        return found

    def remove(self, candidate: Candidate) -> None:
        label, pk = candidate.key.rsplit(":", 1)
        model = apps.get_model(label)
        delete_in_batches(model._base_manager.filter(pk=int(pk)), settings.RETENTION_DELETE_BATCH)


def delete_in_batches(queryset, batch: int) -> int:
    """Delete the rows of `queryset` `batch` at a time, each batch in its own transaction, after the rows
    that cascade from them (deleted the same way) and with the rows that merely point at them (SET_NULL)
    let go in batches first; so Django's own cascade finds nothing left to do. Returns the rows deleted."""
    model, deleted = queryset.model, 0
    batch = max(1, batch)
    while True:
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch])
        if not pks:
            return deleted
        for relation in reverse_relations(model):
            field = relation.field
            children = relation.related_model._base_manager.filter(**{f"{field.name}__in": pks})
            if relation.on_delete is models.CASCADE:
                deleted += delete_in_batches(children, batch)
            elif relation.on_delete is models.SET_NULL:
                _let_go_in_batches(children, field.name, batch)
        with transaction.atomic():
            deleted += model._base_manager.filter(pk__in=pks).delete()[0]


def reverse_relations(model) -> list:
    """Every foreign key pointing at `model`, those without a reverse accessor (related_name="+") too."""
    return [f for f in model._meta.get_fields(include_hidden=True)
            if f.auto_created and not f.concrete and (f.one_to_many or f.one_to_one)]


def _let_go_in_batches(queryset, field_name: str, batch: int) -> None:
    while True:
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch])
        if not pks:
            return
        with transaction.atomic():
            queryset.model._base_manager.filter(pk__in=pks).update(**{field_name: None})
