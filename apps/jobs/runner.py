"""The ONE generic job runner. django-q2 carries (model label, item pk); run_item claims the item with a
compare-and-set, runs the item's registered processor (apps/jobs/registry.py) under a heartbeat, and
records the outcome; then it claims the job's next items in batches (apps/jobs/batch.py: one claim, one
lease and one write of outcomes for many short items, the lease as strong as for one). run_inline runs a whole job in this process. reclaim_stale() re-queues items whose
worker died (heartbeat older than JOB_LEASE_SECONDS) and pending items whose queue message was lost with
a killed cluster. The claim makes every duplicate message harmless."""
import logging
import os
import socket
import time
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.models import F, Max
from django.utils import timezone
from django_q.brokers import get_broker

from apps.audit import record
from apps.dicom.errors import DicomError, DicomTimeout
from apps.jobs import batch, holds, registry
from apps.jobs.context import ItemContext, WorkerSession
from apps.jobs.errors import ItemCanceled, ItemFailed, ItemTimedOut
from apps.jobs.joblog import item_logger, log_crash
from apps.jobs.models import ItemStatus, JobItem, JobStatus
from apps.jobs.queue import RUN_ITEM, enqueue, push

log = logging.getLogger("apps.jobs")
__all__ = ["RUN_ITEM", "reclaim_stale", "run_inline", "run_item", "sweep"]
CRASHES_TOLERATED = 2  # runs lost to dying workers before an item is failed instead of re-queued


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


item_models = holds.item_models


def run_item(label: str, pk: int, *, continue_with_job: bool = True) -> str:
    """django-q2 task: run item `pk` (unless another worker has it or it is no longer pending), then keep
    claiming the job's next pending items without going back to the broker, with one association slot and
    open association kept from row to row (WorkerSession). An urgent job comes first: a message of an
    ordinary job finding urgent items waiting goes back on the broker and its worker drives the urgent job.
    After JOB_SLICE_SECONDS the worker looks around: it moves to an urgent job's waiting items (when its own
    job is not urgent), or, when items of another job of the same priority wait, it puts this job back on
    the broker behind them and returns: jobs share the workers in turn, and a huge list never starves a
    one-row job. The job's status is derived at most every JOB_STATUS_SECONDS while the worker runs, and
    when it stops. `continue_with_job=False` runs item `pk` alone (a test stepping through a job)."""
    model = apps.get_model(label)
    me = worker_id()
    job_id = model.objects.filter(pk=pk).values_list("job_id", flat=True).first()
    if job_id is None:
        return "not pending"
    status = "not pending"
    with WorkerSession(me) as session:
        if continue_with_job and (urgent := _urgent_waiting(model, job_id)):
            push(label, pk)  # this message keeps its job's turn, behind the urgent work
            model, job_id, pk = urgent
        while pk is not None:
            status, switch = _drive(model, job_id, pk, me, session, continue_with_job)
            model, job_id, pk = switch or (model, job_id, None)
    return status


def _drive(model, job_id: int, pk: int, me: str, session, continue_with_job: bool):
    """Run item `pk` and the job's next ones, in batches (apps/jobs/batch.py), see run_item. Returns
    (status of the last item, the urgent job's (model, job id, item pk) to drive next, or None). The worker
    looks around after each item once its slice is over, also in the middle of a batch: how long a batch
    runs never delays an urgent job or a waiting one (the batch ends there, its unstarted items pending)."""
    started = time.monotonic()
    status, refreshed, job, last, switch, yielding = "not pending", 0.0, None, None, None, False
    claimed = [pk] if _claim(model, pk, me) else (batch.claim(model, job_id, me, 1) if continue_with_job else [])
    while claimed:
        with batch.Batch(model, job_id, me, claimed) as run:
            job = run.job
            for item in run:
                status = _run_claimed(run, item, me, session)
                last = item
                session.keep_alive()
                if continue_with_job and time.monotonic() - started > settings.JOB_SLICE_SECONDS:
                    switch, yielding = _look_around(model, job_id, job)
                    if yielding:
                        break
                    started = time.monotonic()  # alone: look again after another slice
                if run.over_time():
                    break  # the rest go back to pending (a slow item among fast ones): any worker takes them
        if continue_with_job:  # a worker's chores; an item run alone (a photo upload's request) only refreshes below
            _reclaim_now_and_then()  # 25 ms of queries every 30 s: never on a request that waits for its answer
        if yielding:
            _yield_to_others(model, job_id, last)
            break
        claimed = batch.claim(model, job_id, me, run.next_size()) if continue_with_job else []
        # (derived while the job goes on; when this was its last batch, once below: a one-row job's status
        # was derived twice, ~6 ms each)
        if claimed and time.monotonic() - refreshed > settings.JOB_STATUS_SECONDS:
            job.refresh_status()
            refreshed = time.monotonic()
    if job is not None:
        job.refresh_status()
    return status, switch


def _look_around(model, job_id: int, job) -> tuple:
    """At the end of a slice: (the urgent job's (model, job id, item pk) to drive next, or None; whether
    this worker leaves job `job_id` for the work that waits: an urgent job, or any other job when this one
    is not urgent itself)."""
    urgent = job.urgent
    switch = None if urgent else _urgent_waiting(model, job_id, current_urgent=False)
    return switch, bool(switch) or _others_waiting(job_id, model, urgent_only=urgent)


def run_inline(job, *, user=None, on_progress=lambda job: None):
    """Run the job's pending items in this process, one at a time in the order they were created, without
    the broker or a worker cluster: the CLI's way, and the photo page's (its sender waits for the answer).
    Items held back (a pause, a server's closed window) stay pending for the workers, and the log says so.
    Items the work creates while it runs (an import's batches) run too. Claims, heartbeats, retries and
    outcomes are the workers' own (run_item); `on_progress(job)` is called after each item. Returns the job,
    refreshed."""
    pending = job.items.filter(status=ItemStatus.PENDING, waiting="")  # held items wait for the workers
    type(job).objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, completed_at=None,
                                               started_at=job.started_at or timezone.now())
    record(user, "job.started", job, items=pending.count())
    while (item := pending.order_by("pk").first()) is not None:
        run_item(item._meta.label, item.pk, continue_with_job=False)
        job.refresh_from_db()
        on_progress(job)
    job.refresh_status()
    job.refresh_from_db()
    if waiting := job.waiting_reason():  # held (a pause, a closed window): left to the workers
        log.warning("%s: %d item(s) wait for the workers: %s", job, job.items.exclude(waiting="").count(), waiting)
    return job


def _claim(model, pk: int, me: str) -> bool:
    """The compare-and-set that makes exactly one worker run an item."""
    now = timezone.now()
    return bool(model.objects.filter(pk=pk, status=ItemStatus.PENDING, waiting="").update(
        status=ItemStatus.RUNNING, started_at=now, heartbeat_at=now, finished_at=None, worker=me,
        attempts=F("attempts") + 1, error=""))


def _waiting_items(model):
    """Items queued and not yet started, nor held back."""
    return model.objects.filter(status=ItemStatus.PENDING, queued_at__isnull=False, waiting="")


def _others_waiting(job_id: int, model, *, urgent_only: bool = False) -> bool:
    """Is an item of any other job (an urgent one, with `urgent_only`) queued and not yet started?"""
    for other in item_models():
        waiting = _waiting_items(other)
        if urgent_only:
            waiting = waiting.filter(job__urgent=True)
        if other is model:
            waiting = waiting.exclude(job_id=job_id)
        if waiting.exists():
            return True
    return False


def _urgent_waiting(model, job_id: int, *, current_urgent: bool | None = None):
    """(model, job id, item pk) of an urgent job with items waiting, when job `job_id` is not urgent itself;
    else None. Of several urgent jobs, the one served least recently (its latest item start the oldest, or
    none yet) comes first: urgent jobs take turns as ordinary ones do."""
    if not _any_urgent_waiting():
        return None
    if current_urgent is None:
        job_model = model._meta.get_field("job").related_model
        current_urgent = job_model.objects.filter(pk=job_id, urgent=True).exists()
    if current_urgent:
        return None
    best = None
    for other in item_models():
        urgent_jobs = (_waiting_items(other).filter(job__urgent=True, job__paused=False)
                       .order_by().values_list("job_id", flat=True).distinct())
        for other_job in urgent_jobs:
            served = other.objects.filter(job_id=other_job).aggregate(last=Max("started_at"))["last"]
            key = (served.timestamp() if served else 0.0, other_job)
            if best is None or key < best[0]:
                best = (key, other, other_job)
    if best is None:
        return None
    _, other, other_job = best
    first = _waiting_items(other).filter(job_id=other_job).order_by("pk").values_list("pk", flat=True).first()
    return (other, other_job, first) if first is not None else None


_urgent_sql: dict[str, tuple[str, tuple]] = {}  # database vendor -> compiled _any_urgent_waiting query


def _any_urgent_waiting() -> bool:
    """Whether an item of any urgent job waits: one query over every item table. A worker asks before each
    message it runs, and almost always nobody is urgent; built with the ORM each time, this took seven
    queries and ~9 ms. Its parameters are constants, so it is compiled once per process."""
    if connection.vendor not in _urgent_sql:
        per_table = [_waiting_items(m).filter(job__urgent=True, job__paused=False).order_by().values_list("job_id")
                     for m in item_models()]
        union = per_table[0].union(*per_table[1:], all=True)[:1]
        _urgent_sql[connection.vendor] = union.query.sql_with_params()
    sql, params = _urgent_sql[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def _yield_to_others(model, job_id: int, item) -> None:
    """Put this job back on the broker, behind the work that waits, as one message for one of its items."""
    waiting = model.objects.filter(job_id=job_id, status=ItemStatus.PENDING).order_by("pk").first()
    if waiting is not None:
        item_logger(item).debug("yielding the worker to other jobs; job goes back on the queue")
        push(model._meta.label, waiting.pk)


def _run_claimed(run, item, me: str, session) -> str:
    """Run one claimed item of the batch `run`, unless a hold applies; its outcome goes to the batch, which
    records it only if the item is still ours."""
    hold = run.hold_for(item)
    if hold is not None:
        run.hold(item, hold)
        return "waiting"
    ctx = ItemContext(item, me, session, cancel=run.cancel, memo=run.memo)
    run.current = ctx
    ctx.log.info("started attempt %d on %s", item.attempts, me)
    started = time.monotonic()
    status, error = _attempts(item, ctx)
    run.done(ctx, status, error, time.monotonic() - started)
    return status


def _attempts(item: JobItem, ctx: ItemContext) -> tuple[str, str]:
    """Run the item's processor until it succeeds, fails for good, or runs out of attempts. Returns
    (status, error)."""
    process = registry.processor_for(type(item))
    while True:
        if ctx.should_stop():
            return ItemStatus.CANCELED, "Canceled."
        ctx.start_attempt()
        try:
            process(item, ctx)
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


def sweep() -> int:
    """The minute schedule: reclaim_stale(), then put held items back on the queue (holds.wake): a window
    that opened since, or a hold whose cause is gone, lets them start. Returns the items re-queued."""
    return reclaim_stale() + holds.wake()


def reclaim_stale() -> int:
    """Re-queue (1) running items whose heartbeat is older than the lease: their worker died; and
    (2) when nothing waits on the broker, pending items queued longer ago than the lease: their message
    died with a killed cluster that had prefetched it. Each re-queue is a compare-and-set, so several
    sweepers at once re-queue an item once. Returns how many items were re-queued."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    requeued, broker_idle = 0, None
    for model in item_models():
        for item in model.objects.filter(status=ItemStatus.RUNNING, heartbeat_at__lt=cutoff).select_related("job"):
            requeued += _reclaim_running(model, item)
        stale = model.objects.filter(status=ItemStatus.PENDING, queued_at__lt=cutoff)
        if stale.exists():
            if broker_idle is None:  # asked only then: django-q's ORM broker closes the database connection
                broker_idle = get_broker().queue_size() == 0  # (a worker reopening it mid-job: ~25 ms)
            if broker_idle:
                requeued += _requeue_forgotten_jobs(model, stale)
    return requeued


def _requeue_forgotten_jobs(model, stale) -> int:
    """Jobs with items queued long ago (`stale`, pending), none running and nothing on the broker: their
    messages died with a killed cluster. Each gets its messages again, once however many sweep at once."""
    requeued = 0
    for job_id in set(stale.values_list("job_id", flat=True)):
        if model.objects.filter(job_id=job_id, status=ItemStatus.RUNNING).exists():
            continue  # a worker is driving this job and will reach its pending items
        first = stale.filter(job_id=job_id).order_by("pk").select_related("job").first()
        if first is None or not model.objects.filter(pk=first.pk, status=ItemStatus.PENDING,
                                                     queued_at=first.queued_at).update(queued_at=timezone.now()):
            continue  # another sweeper took it
        item_logger(first).warning("queued %s ago but never started; job re-queued", timezone.now() - first.queued_at)
        marked = enqueue(first.job, model.objects.filter(job_id=job_id, status=ItemStatus.PENDING),
                         after_commit=False)
        requeued += min(marked, max(1, first.job.parallelism()))  # the messages enqueue() put on the broker
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
    push(model._meta.label, item.pk)
    return 1
