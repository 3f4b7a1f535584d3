"""Batches: a worker claims several of one job's pending items with one compare-and-set, runs them one after
the other under one lease, and writes their outcomes together (apps/jobs/runner.py drives them).

Why: a case-list row that needs one C-FIND takes about a millisecond on an open association; claiming,
loading, hold-checking, heart-beating and recording it one by one cost several times that. Batching keeps
the lease exactly as strong as for one item:
- every claimed item is `running` under this worker's name with a heartbeat the batch renews; a worker that
  dies leaves them so, and reclaim_stale() re-queues them after the lease (none is lost);
- an outcome is written only while the item is still ours and on the same attempt (as for one item), at the
  end of the batch, and by the lease thread at its next beat while a long item holds the batch up; an item
  whose outcome is written never runs again (none repeats); an item whose work ended but whose outcome was
  not yet written when the worker died runs again, as an item in flight always did (work is idempotent);
- items claimed but not started go back to pending, their attempt not counted, when the batch runs well past
  its time (OVERRUN times: a slow row among fast ones), when a hold applies to them, and when the worker
  stops early;
- the batch's size follows the speed of the job's recent items (JOB_BATCH_SECONDS of work, 1 to BATCH_MOST
  items), so slow items are claimed one at a time and several workers still share a short job.
Holds (a pause, a server's paused state or closed window, a folder short of space, any registered check)
are asked once per batch for each distinct (servers, direction, folders written) of its items, with the job
and the servers loaded fresh per batch.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Subquery
from django.utils import timezone

from apps.jobs import holds
from apps.jobs.context import CANCEL_CHECK_SECONDS, CancelWatch, heartbeat_interval
from apps.jobs.joblog import item_logger
from apps.jobs.models import ItemStatus

log = logging.getLogger("apps.jobs")
BATCH_MOST = 500
# A batch is sized for JOB_BATCH_SECONDS of work; it gives its unstarted items back once it has run this many
# times as long. Fast rows end a batch a little before or after its time by the ordinary spread of their
# times: cut at 1x, most batches of a case list gave back a tenth to a third of their rows (an UPDATE, then
# a claim of the same rows again).
OVERRUN = 2


def batch_seconds() -> float:
    return settings.JOB_BATCH_SECONDS


def claim(model, job_id: int, me: str, size: int) -> list[int]:
    """Claim up to `size` of the job's first pending items (not held) with one UPDATE; their pks, or [] when
    nothing is pending. Several workers on one job: a claim that lost every item to another tries again."""
    pending = model.objects.filter(job_id=job_id, status=ItemStatus.PENDING, waiting="")
    while True:
        now = timezone.now()  # the claim's mark: this worker's items started at this instant are this batch
        with transaction.atomic():
            first = pending.order_by("pk").values("pk")[:max(1, size)]
            if model.objects.filter(pk__in=Subquery(first), status=ItemStatus.PENDING, waiting="").update(
                    status=ItemStatus.RUNNING, started_at=now, heartbeat_at=now, finished_at=None, worker=me,
                    attempts=F("attempts") + 1, error=""):
                return list(model.objects.filter(status=ItemStatus.RUNNING, worker=me, started_at=now)
                            .order_by("pk").values_list("pk", flat=True))
        if not pending.exists():
            return []


@dataclass(eq=False)
class Outcome:
    item: object
    status: str
    error: str
    finished_at: datetime
    elapsed: float
    fields: tuple = ()  # item fields the work asked to save with the outcome (ctx.save_with_outcome)
    writes: list = field(default_factory=list)  # (writer, payload) pairs (ctx.write_with_outcome)


class Batch:
    """Claimed items of one job, run by one worker: `with Batch(...) as batch: for item in batch: ...`."""

    def __init__(self, model, job_id: int, me: str, pks: list[int]):
        self.model, self.job_id, self.me = model, job_id, me
        self.pks = list(pks)
        self.unrecorded = set(pks)  # claimed, outcome not yet written: the lease beats them
        self.unstarted = list(pks)
        self.current = None  # the running item's ItemContext
        self.cancel = CancelWatch(model._meta.get_field("job").related_model, job_id)
        self.started = time.monotonic()
        self.ran, self.work_seconds = 0, 0.0
        self._buffer: list[Outcome] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._holds: dict = {}
        self.memo: dict = {}  # what the items' work keeps for the whole batch (ItemContext.per_batch)
        self._done = threading.Event()
        self._thread = None
        self.job = model._meta.get_field("job").related_model.objects.get(pk=job_id)
        self._items = self._load()

    def _load(self) -> list:
        """The claimed items, sharing one job and one copy of each object they point to (their servers)."""
        items = list(self.model.objects.filter(pk__in=self.pks).order_by("pk"))
        for fk in self.model._meta.concrete_fields:
            if not fk.many_to_one or fk.name == "job":
                continue
            ids = {getattr(item, fk.attname) for item in items} - {None}
            shared = fk.related_model._base_manager.in_bulk(ids) if ids else {}
            for item in items:
                if getattr(item, fk.attname) in shared:
                    fk.set_cached_value(item, shared[getattr(item, fk.attname)])
        for item in items:
            item.job = self.job
        return items

    def __enter__(self):
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.give_back(self.unstarted, "the batch ended before they started")
        self.flush()

    def __iter__(self):
        while self.unstarted:
            pk = self.unstarted.pop(0)
            item = next(i for i in self._items if i.pk == pk)
            yield item

    def over_time(self) -> bool:
        """Has the batch run well past the time it was sized for (a row much slower than the job's recent
        ones)? Its unstarted items then go back to pending for any worker."""
        return time.monotonic() - self.started > OVERRUN * batch_seconds()

    def next_size(self) -> int:
        """Items for the next batch: as many as the job's recent items did in JOB_BATCH_SECONDS, at most
        twice this batch's (a job whose items turn slow comes down at once, a fast one grows quickly)."""
        if not self.ran:
            return 1
        per_item = max(self.work_seconds / self.ran, 1e-4)
        return max(1, min(BATCH_MOST, 2 * len(self.pks), int(batch_seconds() / per_item)))

    # --- holds ------------------------------------------------------------------------------------
    def hold_for(self, item):
        """holds.hold_for(item), asked once per batch for the items that talk to the same servers in the same
        direction and write to the same folders (what the registered checks look at)."""
        writes_to = getattr(item, "writes_to", None)
        key = (tuple(s.pk for s in item.servers()), item.direction(),
               tuple(str(folder) for folder in writes_to()) if writes_to else ())
        if key not in self._holds:
            self._holds[key] = holds.hold_for(item)
        return self._holds[key]

    def hold(self, item, hold) -> None:
        """Give `item` and the batch's unstarted items the hold covers back, then hold them with the job's
        other pending items the hold covers, until holds.wake() releases them."""
        covered = set(self.model.objects.filter(pk__in=self.unstarted, **hold.same).values_list("pk", flat=True))
        self.unstarted = [pk for pk in self.unstarted if pk not in covered]
        self.give_back([item.pk, *covered], None)
        held = holds.hold_back(self.model, self.job_id, hold)
        item_logger(item).info("held back with %d other pending item(s): %s", held - 1, hold.reason)

    def give_back(self, pks, why: str | None) -> None:
        """Claimed items never started: pending again, their attempt not counted, for any worker."""
        if not pks:
            return
        given = self.model.objects.filter(pk__in=list(pks), status=ItemStatus.RUNNING, worker=self.me).update(
            status=ItemStatus.PENDING, worker="", attempts=F("attempts") - 1, started_at=None, heartbeat_at=None)
        with self._lock:
            self.unrecorded -= set(pks)
        if why:
            log.debug("job %s: %d claimed item(s) given back: %s", self.job_id, given, why)

    # --- outcomes ---------------------------------------------------------------------------------
    def done(self, ctx, status: str, error: str, elapsed: float) -> None:
        """The item's work ended: its outcome waits for the batch's next write."""
        self.ran += 1
        self.work_seconds += elapsed
        self.current = None
        with self._lock:
            self._buffer.append(Outcome(ctx.item, status, error, timezone.now(), elapsed, tuple(ctx.outcome_fields),
                                        list(ctx.outcome_writes)))

    def flush(self) -> None:
        """Write the buffered outcomes in one transaction, each only if its item is still ours on the same
        attempt (another worker may have reclaimed it after a lost lease: then its outcome is dropped)."""
        with self._flush_lock:
            with self._lock:
                outcomes, self._buffer = self._buffer, []
            if not outcomes:
                return
            with transaction.atomic():
                owned = dict(self.model.objects.select_for_update().filter(
                    pk__in=[o.item.pk for o in outcomes], status=ItemStatus.RUNNING, worker=self.me)
                    .values_list("pk", "attempts"))
                mine = [o for o in outcomes if owned.get(o.item.pk) == o.item.attempts]
                self._write(mine)
                written = {id(o) for o in mine}
            with self._lock:
                self.unrecorded -= {o.item.pk for o in outcomes}
        for o in outcomes:
            item_log = item_logger(o.item)
            if id(o) in written:
                item_log.info("%s after %.1f s, attempt %d", o.status, o.elapsed, o.item.attempts)
                if o.error:
                    item_log.debug("error: %s", o.error)  # may quote a patient: DEBUG only
            else:
                item_log.warning("lost its lease while running (another worker took it over); outcome dropped")

    def _write(self, outcomes: list[Outcome]) -> None:
        now = timezone.now()
        by_fields: dict[tuple, list] = {}
        writers: dict = {}
        for o in outcomes:
            extra = tuple(sorted(o.fields))
            by_fields.setdefault(extra, []).append(
                (o.item.pk, [o.status, o.error, o.item.result, o.finished_at, now,
                             *(getattr(o.item, self.model._meta.get_field(name).attname) for name in extra)]))
            for writer, payload in o.writes:
                writers.setdefault(writer, []).append((o.item, payload))
        for extra, rows in by_fields.items():
            _update_rows(self.model, rows, ["status", "error", "result", "finished_at", "heartbeat_at", *extra])
        for writer, pairs in writers.items():
            writer(pairs)

    # --- the lease --------------------------------------------------------------------------------
    def _beat(self) -> None:
        """Every heartbeat interval: renew the lease of every claimed item whose outcome is not written yet
        (and the held association slots), and write the outcomes a long item keeps waiting; every
        CANCEL_CHECK_SECONDS: tell the running item to stop when its job was canceled or its lease lost."""
        last = time.monotonic()
        try:
            while not self._done.wait(CANCEL_CHECK_SECONDS):
                try:
                    if time.monotonic() - last >= heartbeat_interval():
                        last = time.monotonic()
                        self.heartbeat()
                        self.flush()
                    ctx = self.current
                    if ctx is not None and ctx.should_stop():
                        ctx.stop_requested.set()
                except Exception as exc:  # a missed beat is survivable; the next one may pass
                    log.warning("job %s: heartbeat failed: %s", self.job_id, type(exc).__name__)
        finally:
            connections.close_all()  # this thread's own connections only

    def heartbeat(self) -> None:
        ctx = self.current
        with self._lock:
            others = self.unrecorded - ({ctx.item.pk} if ctx is not None else set())
        if ctx is not None:
            ctx.heartbeat()  # the running item's own lease (lost: it stops) and the slots it holds
        if others:
            self.model.objects.filter(pk__in=list(others), status=ItemStatus.RUNNING, worker=self.me).update(
                heartbeat_at=timezone.now())


def _update_rows(model, rows: list[tuple], names: list[str]) -> None:
    """UPDATE fields `names` of each (pk, [value of each name]) in `rows`: one statement run for every row
    (executemany), where the ORM's bulk_update would build a CASE per field per row, and model instances
    made only to be read back cost more than the work they record."""
    connection = connections[model.objects.db]
    fields = [model._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(model._meta.db_table)} SET " + ", ".join(f"{quote(f.column)} = %s" for f in fields)
           + f" WHERE {quote(model._meta.pk.column)} = %s")
    params = [[f.get_db_prep_save(value, connection) for f, value in zip(fields, values)] + [pk] for pk, values in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
