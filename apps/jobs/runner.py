"""The ONE generic job runner. django-q2 carries (model label, item pk); run_item claims the item with a
compare-and-set, runs item.process(ctx) under a heartbeat, and records the outcome. reclaim_stale()
re-queues items whose worker died (heartbeat older than JOB_LEASE_SECONDS) and pending items whose
queue message was lost with a killed cluster. The claim makes every duplicate message harmless."""
import logging
import os
import socket
import time
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.tasks import async_task

from apps.dicom.errors import DicomError, DicomTimeout
from apps.jobs.context import ItemContext
from apps.jobs.errors import ItemCanceled, ItemFailed, ItemTimedOut
from apps.jobs.joblog import item_logger, log_crash
from apps.jobs.models import ItemStatus, JobItem

log = logging.getLogger("apps.jobs")
RUN_ITEM = "apps.jobs.runner.run_item"
CRASHES_TOLERATED = 2  # runs lost to dying workers before an item is failed instead of re-queued


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def item_models() -> list[type[JobItem]]:
    return [m for m in apps.get_models() if issubclass(m, JobItem)]


def _push(label: str, pk: int) -> None:
    async_task(RUN_ITEM, label, pk, group=label)


def enqueue(item: JobItem) -> None:
    enqueue_many([item])


def enqueue_many(items) -> None:
    """Queue the items once the current transaction commits (a worker must be able to see them)."""
    keys = [(item._meta.label, item.pk) for item in items]
    for model in {type(item) for item in items}:
        model.objects.filter(pk__in=[i.pk for i in items if type(i) is model]).update(queued_at=timezone.now())
    transaction.on_commit(lambda: [_push(label, pk) for label, pk in keys])


def run_item(label: str, pk: int) -> str:
    """django-q2 task: run one item unless another worker has it or it is no longer pending."""
    model = apps.get_model(label)
    me, now = worker_id(), timezone.now()
    claimed = model.objects.filter(pk=pk, status=ItemStatus.PENDING).update(
        status=ItemStatus.RUNNING, started_at=now, heartbeat_at=now, finished_at=None, worker=me,
        attempts=F("attempts") + 1, error="")
    if not claimed:
        return "not pending"
    item = model.objects.select_related("job").get(pk=pk)
    ctx = ItemContext(item, me)
    ctx.log.info("started attempt %d on %s", item.attempts, me)
    started = time.monotonic()
    with ctx.heartbeats():
        status, error = _attempts(item, ctx)
    recorded = model.objects.filter(pk=pk, status=ItemStatus.RUNNING, worker=me, attempts=item.attempts).update(
        status=status, error=error, result=item.result, finished_at=timezone.now(), heartbeat_at=timezone.now())
    if recorded:
        ctx.log.info("%s after %.1f s, attempt %d", status, time.monotonic() - started, item.attempts)
        if error:
            ctx.log.debug("error: %s", error)  # may quote a patient: DEBUG only
    else:
        ctx.log.warning("lost its lease while running (another worker took it over); outcome dropped")
    item.job.refresh_status()
    _reclaim_now_and_then()
    return status


def _attempts(item: JobItem, ctx: ItemContext) -> tuple[str, str]:
    """Run process() until it succeeds, fails for good, or runs out of attempts. Returns (status, error)."""
    while True:
        if ctx.should_stop():
            return ItemStatus.CANCELED, "Canceled."
        try:
            item.process(ctx)
            return ItemStatus.SUCCEEDED, ""
        except ItemCanceled:
            return ItemStatus.CANCELED, "Canceled while running."
        except ItemTimedOut as exc:
            return ItemStatus.TIMED_OUT, str(exc)
        except ItemFailed as exc:
            return ItemStatus.FAILED, str(exc)
        except DicomError as exc:
            if not (exc.retriable and item.attempts < item.max_attempts()):
                return (ItemStatus.TIMED_OUT if isinstance(exc, DicomTimeout) else ItemStatus.FAILED), str(exc)
            ctx.log.info("attempt %d of %d: %s, retrying", item.attempts, item.max_attempts(), type(exc).__name__)
            ctx.wait(min(0.5 * 2 ** (item.attempts - 1), 10.0))  # short backoff: 0.5, 1, 2 ... 10 s
            if not ctx.next_attempt():
                return ItemStatus.FAILED, "Lost to another worker."  # dropped by the caller's CAS anyway
        except Exception as exc:
            log_crash(ctx.log, exc)
            return ItemStatus.FAILED, f"Internal error ({type(exc).__name__}); the worker log has the details."


_last_reclaim = 0.0


def _reclaim_now_and_then() -> None:
    """Workers that finish items also sweep for dead ones, at most every half lease per process."""
    global _last_reclaim
    if time.monotonic() - _last_reclaim > settings.JOB_LEASE_SECONDS / 2:
        _last_reclaim = time.monotonic()
        reclaim_stale()


def reclaim_stale() -> int:
    """Re-queue (1) running items whose heartbeat is older than the lease: their worker died; and
    (2) when nothing waits on the broker, pending items queued longer ago than the lease: their message
    died with a killed cluster that had prefetched it. Each re-queue is a compare-and-set, so several
    sweepers at once re-queue an item once. Returns how many items were re-queued."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    broker_idle = get_broker().queue_size() == 0
    requeued = 0
    for model in item_models():
        for item in model.objects.filter(status=ItemStatus.RUNNING, heartbeat_at__lt=cutoff).select_related("job"):
            requeued += _reclaim_running(model, item)
        if broker_idle:
            for item in model.objects.filter(status=ItemStatus.PENDING, queued_at__lt=cutoff).select_related("job"):
                if model.objects.filter(pk=item.pk, status=ItemStatus.PENDING, queued_at=item.queued_at).update(
                        queued_at=timezone.now()):
                    item_logger(item).warning("queued %s ago but never started; re-queued",
                                              timezone.now() - item.queued_at)
                    _push(model._meta.label, item.pk)
                    requeued += 1
    return requeued


def _reclaim_running(model, item) -> int:
    mine = model.objects.filter(pk=item.pk, status=ItemStatus.RUNNING, heartbeat_at=item.heartbeat_at)
    item_log = item_logger(item)
    if item.attempts >= item.max_attempts() + CRASHES_TOLERATED:
        if mine.update(status=ItemStatus.FAILED, finished_at=timezone.now(),
                       error=f"The worker running this item stopped {item.attempts} times; giving up."):
            item_log.error("worker %s died again; failed after %d attempts", item.worker, item.attempts)
            item.job.refresh_status()
        return 0
    if not mine.update(status=ItemStatus.PENDING, worker="", queued_at=timezone.now()):
        return 0
    item_log.warning("worker %s stopped answering (heartbeat %s); re-queued", item.worker, item.heartbeat_at)
    _push(model._meta.label, item.pk)
    return 1
