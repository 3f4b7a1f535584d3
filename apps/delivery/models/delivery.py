"""Delivery jobs (seed 000's batch + transfer wrapper): the cases of a retrieval, N per batch, each
batch zipped or sent as files to a target once all its cases finished downloading. A batch is the job
item; it is queued ("released") only when its cases are done, so batch 1 travels while batch 2 is
still being retrieved, and no worker sits waiting for a download."""
from __future__ import annotations

from django.db import models, transaction

from apps.jobs.models import ItemStatus, Job, JobItem

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
    paced = models.BooleanField(default=False, editable=False,
                                help_text="Came with its retrieval, which then downloads one batch at a time.")

    class Meta(Job.Meta):
        verbose_name = "delivery job"

    def __str__(self) -> str:
        return f"Delivery #{self.pk} to {self.target.name}"

    @classmethod
    def for_retrieval(cls, retrieval, target, *, user=None, mode: str = Mode.ZIP, batch_size: int = 20,
                      keep_zip: bool = False, clear: bool = True, start: bool = True,
                      paced: bool = False) -> "DeliveryJob":
        if not target.zippable:
            mode = cls.Mode.DIRECT  # a PACS takes instances, not zips
        job = cls.objects.create(created_by=user, retrieval=retrieval, target=target, mode=mode,
                                 batch_size=batch_size, keep_zip=keep_zip, clear=clear, paced=paced,
                                 description=f"{retrieval} to {target.name}, {batch_size} cases per batch")
        case_ids = list(retrieval.items.order_by("line", "pk").values_list("pk", flat=True))
        DeliveryBatch.objects.bulk_create([
            DeliveryBatch(job=job, number=n + 1, case_ids=case_ids[i:i + batch_size], cases=len(case_ids[i:i + batch_size]))
            for n, i in enumerate(range(0, len(case_ids), batch_size))])
        if start:
            job.start(user)
        return job

    def ready_batches(self) -> list["DeliveryBatch"]:
        """Pending, not yet released batches whose cases have all finished retrieving."""
        waiting = list(self.items.filter(status=ItemStatus.PENDING, released=False))
        if not waiting or self.retrieval_id is None:
            return waiting
        finished = set(self.retrieval.items.filter(status__in=FINISHED).values_list("pk", flat=True))
        return [batch for batch in waiting if set(batch.case_ids) <= finished]

    def downloading_case_ids(self) -> list[int]:
        """The cases of the first batch whose retrieval is not finished: the ones a paced retrieval
        downloads now (empty when every case finished)."""
        finished = set(self.retrieval.items.filter(status__in=FINISHED).values_list("pk", flat=True))
        for batch in self.items.order_by("number"):
            if not set(batch.case_ids) <= finished:
                return batch.case_ids
        return []

    def startable_items(self):
        ready = self.ready_batches()
        with transaction.atomic():
            claimed = [b for b in ready if DeliveryBatch.objects.filter(pk=b.pk, released=False).update(released=True)]
        return self.items.filter(pk__in=[b.pk for b in claimed]) | self.items.filter(
            status=ItemStatus.PENDING, released=True, queued_at__isnull=True)

    def release_ready(self) -> int:
        """Queue the batches that became ready (called whenever the retrieval makes progress)."""
        from apps.jobs.runner import enqueue_many

        if self.status not in ("pending", "running") or self.started_at is None or self.cancel_requested:
            return 0
        batches = list(self.startable_items())
        enqueue_many(batches)
        return len(batches)

    def extra_progress(self) -> dict:
        sums = self.items.aggregate(cases=models.Sum("cases"), files=models.Sum("files"),
                                    bytes=models.Sum("bytes"), sent=models.Sum("sent_bytes"))
        return {"cases": sums["cases"] or 0, "files": sums["files"] or 0,
                "megabytes": round((sums["bytes"] or 0) / 1e6, 1), "sent_megabytes": round((sums["sent"] or 0) / 1e6, 1)}


class DeliveryBatch(JobItem):
    job = models.ForeignKey(DeliveryJob, on_delete=models.CASCADE, related_name="items")
    number = models.PositiveIntegerField()
    case_ids = models.JSONField(default=list, help_text="Retrieval items (case-list rows) in this batch.")
    cases = models.PositiveIntegerField(default=0)
    released = models.BooleanField(default=False, help_text="Queued: all its cases finished retrieving.")
    files = models.PositiveIntegerField(default=0, help_text="Files in the batch.")
    bytes = models.BigIntegerField(default=0, help_text="Bytes of the batch's files (or its zip).")
    sent_bytes = models.BigIntegerField(default=0, help_text="Bytes the target confirmed.")
    zip_path = models.CharField(max_length=500, blank=True)
    upload_url = models.CharField(max_length=500, blank=True, help_text="The receiving portal's upload, to resume.")

    class Meta(JobItem.Meta):
        verbose_name = "delivery batch"
        verbose_name_plural = "delivery batches"
        ordering = ["job", "number"]

    def __str__(self) -> str:
        return f"batch {self.number}"

    def process(self, ctx) -> None:
        from apps.delivery.deliver import deliver_batch

        deliver_batch(self, ctx)
