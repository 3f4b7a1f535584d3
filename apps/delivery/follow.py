"""A retrieval that carries a delivery (`{target, mode, batch_size, keep_zip, clear}`), as the batch
download tool ran it: download N cases, send them, and meanwhile download the next N. The delivery is
attached before the retrieval starts; the retrieval then queues only the rows of the first batch not
yet downloaded, and each time a batch's rows are done, that batch's delivery and the next batch's rows
are queued together, so batch 1 travels while batch 2 downloads and the disk holds about two batches.
Canceling the delivery lets the retrieval go on with all its remaining rows."""
from apps.delivery.models import DeliveryJob
from apps.jobs.access import start_permission
from apps.jobs.models import ItemStatus

REFUSED = "This account may not start deliveries (it needs the 'delivery.add_deliveryjob' permission)."


def may_deliver(user) -> bool:
    return bool(user and user.has_perm(start_permission(DeliveryJob)))


def delivery_refusal(user, options: dict | None) -> str | None:
    """Why this user may not start this delivery, or None: the start permission, and for a PACS target
    "send" access to its server."""
    if not options:
        return None
    if not may_deliver(user):
        return REFUSED
    server = options["target"].server
    if server is not None and not server.may(user, "send"):
        return server.refusal("send")
    return None


def deliver_each(retrievals, options: dict | None, user) -> list[DeliveryJob]:
    """Attach a delivery to each retrieval job that has not started yet."""
    if not options:
        return []
    options = dict(options)
    target = options.pop("target")
    return [DeliveryJob.for_retrieval(job, target, user=user, paced=True, **options) for job in retrievals]


def pacing_delivery(retrieval) -> DeliveryJob | None:
    return retrieval.deliveries.filter(paced=True, cancel_requested=False).first()


def rows_to_start(retrieval, pending):
    """Of the retrieval's pending rows, those that may be queued now."""
    delivery = pacing_delivery(retrieval)
    if delivery is None:
        return pending
    return pending.filter(pk__in=delivery.downloading_case_ids())


def start_next_rows(retrieval) -> int:
    """Queue the held rows that may go now (each one once: the queued_at compare-and-set)."""
    from django.utils import timezone

    from apps.jobs.runner import enqueue_many

    if retrieval.started_at is None or retrieval.cancel_requested:
        return 0
    held = rows_to_start(retrieval, retrieval.items.filter(status=ItemStatus.PENDING, queued_at__isnull=True))
    now = timezone.now()
    rows = [row for row in held if type(row).objects.filter(pk=row.pk, queued_at__isnull=True).update(queued_at=now)]
    enqueue_many(rows)
    return len(rows)
