"""Delivery jobs (the batch download tool's transfer wrapper): the cases of a retrieval, N per batch,
each batch zipped or sent as files to a target once all its cases finished retrieving. The job holds
the plan (case-list lines per batch); a batch item is created and queued only when its cases are done,
so batch 1 travels while batch 2 is still being retrieved and no worker sits waiting for a download."""
from __future__ import annotations

from django.db import IntegrityError, models, transaction

from apps.jobs.models import ItemStatus, Job, JobItem, JobStatus
from apps.jobs.queue import enqueue

FINISHED = [ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.TIMED_OUT, ItemStatus.CANCELED]


class DeliveryJob(Job):
    class Mode(models.TextChoices):
        ZIP = "zip", "one zip per batch"
        DIRECT = "direct", "the files themselves"

    retrieval = models.ForeignKey("retrieval.RetrievalJob", null=True, on_delete=models.SET_NULL,
                                  related_name="deliveries")
    target = models.ForeignKey("delivery.DeliveryTarget", on_delete=models.PROTECT, related_name="deliveries")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.ZIP)
    batch_size = models.PositiveIntegerField(default=20)
    keep_zip = models.BooleanField(default=False, help_text="Keep each batch's zip after it was delivered.")
    clear = models.BooleanField(default=True, help_text="Delete the delivered case files once confirmed.")
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                help_text="The research project what it sends is de-identified for; empty: as filed.")
    plan = models.JSONField(default=list, editable=False, help_text="Case-list lines of each batch, in order.")

    class Meta(Job.Meta):
        verbose_name = "delivery job"

    def __str__(self) -> str:
        return f"Delivery #{self.pk} to {self.target.name}"

    @classmethod
    def for_retrieval(cls, retrieval, target, *, user=None, mode: str = Mode.ZIP, batch_size: int = 20,
                      keep_zip: bool = False, clear: bool = True, start: bool = True,
                      lines: list[int] | None = None, project=None) -> "DeliveryJob":
        """`lines`: the retrieval's case-list lines, when its rows are still being created."""
        if not target.zippable:
            mode = cls.Mode.DIRECT  # a PACS takes instances, not zips
        lines = sorted(lines if lines is not None else retrieval.items.values_list("line", flat=True))
        job = cls.objects.create(created_by=user, retrieval=retrieval, target=target, mode=mode,
                                 batch_size=batch_size, keep_zip=keep_zip, clear=clear, project=project,
                                 plan=[lines[i:i + batch_size] for i in range(0, len(lines), batch_size)],
                                 description=f"{retrieval} to {target.name}, {batch_size} cases per batch")
        if start:
            job.start(user)
        return job

    def start(self, user=None) -> int:
        return super().start(user) + self.release_ready()

    def release_ready(self) -> int:
        """Create and queue the batches whose cases have all finished retrieving (called whenever the
        retrieval makes progress). A batch is created once: (job, number) is unique."""
        fresh = type(self).objects.filter(pk=self.pk, started_at__isnull=False, cancel_requested=False,
                                          status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists()
        if not fresh or self.retrieval_id is None:
            return 0
        finished = set(self.retrieval.items.filter(status__in=FINISHED).values_list("line", flat=True))
        existing = set(self.items.values_list("number", flat=True))
        created = []
        for number, lines in enumerate(self.plan, start=1):
            if number in existing or not set(lines) <= finished:
                continue
            try:
                with transaction.atomic():
                    created.append(DeliveryBatch.objects.create(job=self, number=number, lines=lines, cases=len(lines)))
            except IntegrityError:  # another worker released it a moment ago
                continue
        enqueue(self, self.items.filter(pk__in=[batch.pk for batch in created]))
        return len(created)

    def derive_status(self, counts: dict[str, int]) -> str:
        """Batches still waiting for their cases keep the job running (or end canceled)."""
        waiting = len(self.plan) - sum(counts.values())
        if waiting > 0 and not self.cancel_requested:
            return JobStatus.RUNNING if self.started_at else JobStatus.PENDING
        if waiting > 0 and not (counts[ItemStatus.PENDING] or counts[ItemStatus.RUNNING]):
            return JobStatus.CANCELED
        return super().derive_status(counts)

    def extra_progress(self) -> dict:
        sums = self.items.aggregate(cases=models.Sum("cases"), files=models.Sum("files"),
                                    bytes=models.Sum("bytes"), sent=models.Sum("sent_bytes"))
        return {"batches": len(self.plan), "cases": sums["cases"] or 0, "files": sums["files"] or 0,
                "megabytes": round((sums["bytes"] or 0) / 1e6, 1), "sent_megabytes": round((sums["sent"] or 0) / 1e6, 1)}


class DeliveryBatch(JobItem):
    instances_field = "files"
    job = models.ForeignKey(DeliveryJob, on_delete=models.CASCADE, related_name="items")
    number = models.PositiveIntegerField()
    lines = models.JSONField(default=list, help_text="Case-list lines (retrieval rows) in this batch.")
    cases = models.PositiveIntegerField(default=0)
    files = models.PositiveIntegerField(default=0, help_text="Files in the batch.")
    bytes = models.BigIntegerField(default=0, help_text="Bytes of the batch's files (or its zip).")
    sent_bytes = models.BigIntegerField(default=0, help_text="Bytes the target confirmed.")
    zip_path = models.CharField(max_length=500, blank=True)
    upload_url = models.CharField(max_length=500, blank=True, help_text="The receiving portal's upload, to resume.")

    class Meta(JobItem.Meta):
        verbose_name = "delivery batch"
        verbose_name_plural = "delivery batches"
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="delivery_one_batch_per_number")]

    def __str__(self) -> str:
        return f"batch {self.number}"

    def servers(self) -> list:
        """A PACS target's server (C-STORE or STOW-RS): its pause and send windows hold the batch as they hold
        any send (apps/servers/windows.py). A portal or folder target names no server."""
        target = self.job.target
        if target.kind in (target.Kind.DICOM, target.Kind.DICOMWEB) and target.server is not None:
            return [target.server]
        return []

    def direction(self) -> str | None:
        return "send" if self.servers() else None
