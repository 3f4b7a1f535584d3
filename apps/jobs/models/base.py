"""The abstract Job / JobItem every app builds on, and how a job's status follows from its items.

An app declares `class XxxJob(Job)` and `class XxxItem(JobItem)` with
`job = models.ForeignKey(XxxJob, on_delete=models.CASCADE, related_name="items")`, and registers the
item's work in its AppConfig.ready() (apps/jobs/registry.py). The generic runner (apps/jobs/runner.py)
does the rest."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Count
from django.utils import timezone

from apps.audit import record
from apps.jobs import notices, priority
from apps.jobs.queue import enqueue
from apps.jobs.signals import job_refreshed

if TYPE_CHECKING:
    from apps.servers.models import DicomServer


class JobStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"
    CANCELED = "canceled"


class ItemStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"


JOB_PAUSED = "Paused: the job is paused; resume it to continue."
JOB_DONE = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.PARTIAL, JobStatus.CANCELED}


def derive_job_status(counts: dict[str, int], *, started: bool) -> str:
    """A job runs while any item is pending or running; then it is canceled if any item was canceled,
    succeeded if none failed, failed if none succeeded, and partial otherwise."""
    if counts[ItemStatus.PENDING] or counts[ItemStatus.RUNNING]:
        return JobStatus.RUNNING if started else JobStatus.PENDING
    if counts[ItemStatus.CANCELED]:
        return JobStatus.CANCELED
    ended_badly = counts[ItemStatus.FAILED] + counts[ItemStatus.TIMED_OUT]
    if not ended_badly:
        return JobStatus.SUCCEEDED
    return JobStatus.PARTIAL if counts[ItemStatus.SUCCEEDED] else JobStatus.FAILED


def count_by_status(queryset, statuses) -> dict[str, int]:
    counts = dict.fromkeys(statuses, 0)
    for row in queryset.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return counts


class Job(models.Model):
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    urgent = models.BooleanField(default=False, help_text="Workers take the items of urgent jobs first.")
    paused = models.BooleanField(default=False, help_text="Nothing new is started until the job is resumed.")
    notify = models.BooleanField(default=False, help_text="E-mail the job's owner when it ends.")

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} #{self.pk}"

    def save(self, *args, **kwargs):
        if self._state.adding and priority.requested():
            self.urgent = True  # created by a request that asked for "urgent": true (apps/jobs/priority.py)
        if self._state.adding and notices.requested():
            self.notify = True  # created by a request that asked for "notify": true (apps/jobs/notices.py)
        super().save(*args, **kwargs)

    @classmethod
    def status_counts(cls) -> dict[str, int]:
        return count_by_status(cls.objects.all(), JobStatus.values)

    def item_counts(self) -> dict[str, int]:
        return count_by_status(self.items.all(), ItemStatus.values)

    def progress(self) -> dict:
        counts = self.item_counts()
        return {"total": sum(counts.values()), **counts, **self.extra_progress()}

    def extra_progress(self) -> dict:
        """App-specific counters (instances, MB...) merged into progress()."""
        return {}

    def parallelism(self) -> int:
        """How many workers may run this job's items at once: one broker message each (apps/jobs/queue.py)."""
        return settings.Q_CLUSTER["workers"]

    def derive_status(self, counts: dict[str, int]) -> str:
        """The job's status from its item counts; an app may add what only it knows (bad input rows)."""
        return derive_job_status(counts, started=self.started_at is not None)

    def refresh_status(self) -> str:
        """Derive status from the items. Counting and writing happen under the job's row lock, so two
        workers finishing the last two items cannot leave the job "running" forever."""
        with transaction.atomic():
            job = type(self).objects.select_for_update().get(pk=self.pk)
            status = job.derive_status(job.item_counts())
            if status != job.status:
                job.status = status
                job.completed_at = timezone.now() if status in JOB_DONE else None
                job.save(update_fields=["status", "completed_at"])
        self.status, self.completed_at = job.status, job.completed_at
        job_refreshed.send(sender=type(self), job=self)
        return status

    def start(self, user=None) -> int:
        """Queue every pending item. Returns how many were queued."""
        self.status, self.completed_at = JobStatus.RUNNING, None
        self.started_at = self.started_at or timezone.now()
        self.save(update_fields=["status", "started_at", "completed_at"])
        queued = enqueue(self)
        record(user, "job.started", self, items=queued)
        self.refresh_status()  # a job without items is done at once
        return queued

    def cancel(self, user=None) -> int:
        """Cancel pending items now; running items see ctx.should_stop() and stop at their next check.
        Returns how many pending items were canceled."""
        with transaction.atomic():
            type(self).objects.filter(pk=self.pk).update(cancel_requested=True)
            canceled = self.items.filter(status=ItemStatus.PENDING).update(
                status=ItemStatus.CANCELED, error="Canceled before it started.", finished_at=timezone.now())
        self.cancel_requested = True
        running = self.items.filter(status=ItemStatus.RUNNING).count()
        record(user, "job.canceled", self, canceled_items=canceled, running_items_asked_to_stop=running)
        self.refresh_status()
        return canceled

    def pause(self, user=None) -> int:
        """Start nothing new: pending items wait (their `waiting` says why) until resume(); running items
        finish. Returns how many pending items are held."""
        with transaction.atomic():
            type(self).objects.filter(pk=self.pk).update(paused=True)
            held = self.items.filter(status=ItemStatus.PENDING).update(waiting=JOB_PAUSED, queued_at=None)
        self.paused = True
        running = self.items.filter(status=ItemStatus.RUNNING).count()
        record(user, "job.paused", self, held_items=held, running_items_finishing=running)
        return held

    def resume(self, user=None) -> int:
        """Undo pause(): every held item goes back on the queue (one still held by something else, a
        paused server or a closed window, is found again when a worker claims it). Returns how many."""
        with transaction.atomic():
            type(self).objects.filter(pk=self.pk).update(paused=False)
            self.paused = False
            released = self.items.filter(status=ItemStatus.PENDING).exclude(waiting="").update(waiting="")
            if released and not self.cancel_requested:
                enqueue(self, self.items.filter(status=ItemStatus.PENDING, waiting=""))
        record(user, "job.resumed", self, items=released)
        return released

    def make_urgent(self, user=None) -> None:
        """Raise the job: from its next item on, workers take its items before those of ordinary jobs."""
        type(self).objects.filter(pk=self.pk).update(urgent=True)
        self.urgent = True
        record(user, "job.raised", self)

    def waiting_reason(self) -> str:
        """Why the job's pending items are held back, in words ("" when nothing is held)."""
        return (self.items.filter(status=ItemStatus.PENDING).exclude(waiting="").order_by("pk")
                .values_list("waiting", flat=True).first() or "")

    def state(self) -> str:
        """Urgent, paused, or why its items wait ("waiting for the window of LK, opens at 20:00"), in the
        words the admin shows next to the progress bar and the progress endpoint sends."""
        waiting = self.waiting_reason()
        parts = (["urgent"] if self.urgent else []) + (["paused"] if self.paused else [])
        if waiting and waiting != JOB_PAUSED:
            parts.append(waiting)
        return " · ".join(parts)

    def retry_failed(self, user=None) -> int:
        """Send failed and timed-out items round again, each with a fresh attempt budget."""
        with transaction.atomic():
            again = self.items.filter(status__in=[ItemStatus.FAILED, ItemStatus.TIMED_OUT]).update(
                status=ItemStatus.PENDING, error="", attempts=0, finished_at=None, worker="")
            self.cancel_requested, self.status, self.completed_at = False, JobStatus.RUNNING, None
            self.started_at = self.started_at or timezone.now()
            self.save(update_fields=["cancel_requested", "status", "completed_at", "started_at"])
            enqueue(self)
        record(user, "job.retried", self, items=again)
        self.refresh_status()
        return again


class JobItem(models.Model):
    status = models.CharField(max_length=16, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    error = models.TextField(blank=True, help_text="Why the item failed, in words a user understands.")
    attempts = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When it was last put on the queue.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=100, blank=True, help_text="host:pid of the worker running it.")
    waiting = models.CharField(max_length=200, blank=True,
                               help_text="Why this pending item is held back (a pause, a server's window).")

    class Meta:
        abstract = True
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="%(app_label)s_%(class)s_lease")]

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} #{self.pk}"

    # The field counting the instances an item moved (the dashboard's instances per hour); None: each
    # finished item counts as one, or the app overrides instances_finished().
    instances_field: str | None = None

    @classmethod
    def status_counts(cls) -> dict[str, int]:
        return count_by_status(cls.objects.all(), ItemStatus.values)

    @classmethod
    def instances_finished(cls, since) -> list[tuple]:
        """(finished_at, instances) of the items that finished since `since`."""
        items = cls.objects.filter(finished_at__gte=since)
        if cls.instances_field:
            return list(items.values_list("finished_at", cls.instances_field))
        return [(finished, 1) for finished in items.values_list("finished_at", flat=True)]

    # --- hooks for the app (the work itself is registered: apps/jobs/registry.py) ----------------
    def server(self) -> DicomServer | None:
        """The server this item talks to (ctx.association_slot() limits associations to it)."""
        return None

    def max_attempts(self) -> int:
        """Runs allowed for retriable DICOM errors (retrieval: 1 + server.retries)."""
        return 1

    def servers(self) -> list:
        """Every server the item's work talks to: a pause or a closed window of any of them holds it back."""
        server = self.server()
        return [server] if server is not None else []

    def direction(self) -> str | None:
        """Which of a server's windows the work needs: "query", "retrieve" or "send"; None: no window
        applies (an echo)."""
        return None

    def writes_to(self) -> tuple[str, ...]:
        """The data folders the work writes to (apps/jobs/diskspace.FOLDERS): below its MIN_FREE_GB floor
        the item waits."""
        return ()

    def held_with(self, server) -> dict:
        """Lookups of the job's other pending items that wait with this one when `server` holds it back:
        those of the same server when items name their server, else all of them."""
        if any(f.name == "dicom_server" for f in self._meta.fields):
            return {"dicom_server": server}
        return {}
