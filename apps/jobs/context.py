"""ItemContext: what a running item's work (its registered processor, fn(item, ctx)) gets from the runner."""
import threading
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import connections
from django.db.models import F
from django.utils import timezone

from apps.dicom import reuse
from apps.jobs import slots
from apps.jobs.joblog import item_logger
from apps.jobs.models import ItemStatus

CANCEL_CHECK_SECONDS = 1.0  # should_stop() asks the database at most this often


def heartbeat_interval() -> float:
    return max(0.5, settings.JOB_LEASE_SECONDS / 4)


class CancelWatch:
    """Has job `job_id` been asked to cancel? Asks the database at most every CANCEL_CHECK_SECONDS, for
    every item of a batch at once (apps/jobs/batch.py); once canceled, it stays so."""

    def __init__(self, job_model, job_id: int):
        self.job_model, self.job_id = job_model, job_id
        self._checked_at = 0.0
        self.canceled = False

    def __call__(self) -> bool:
        if not self.canceled and time.monotonic() - self._checked_at > CANCEL_CHECK_SECONDS:
            self._checked_at = time.monotonic()
            self.canceled = self.job_model.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self.canceled


class WorkerSession:
    """What a worker keeps while it runs item after item of one job: one association slot (the server of
    the last item, held until an item needs another server or the session ends) and the associations
    left open inside it (apps/dicom/reuse.py). An item's association therefore costs nothing when the
    previous row talked to the same server, and the server's limit still holds: the session holds the
    slot for as long as the association may stay open."""

    def __init__(self, worker: str):
        self.worker = worker
        self._slot: tuple[int, str] | None = None  # (server pk, holder token)
        self._in_use = False
        self._pool = None
        self._renewed_at = time.monotonic()

    def __enter__(self):
        self._pool_cm = reuse.reusing_associations()
        self._pool = self._pool_cm.__enter__()
        return self

    def __exit__(self, *exc):
        self._pool_cm.__exit__(*exc)  # associations first: they need the slot while open
        self._release()

    def tokens(self) -> set[str]:
        return {self._slot[1]} if self._slot else set()

    def keep_alive(self) -> None:
        """Renew the held slot's lease between items (an item's own heartbeat renews it only while the
        item runs longer than a beat), so a worker running thousands of short rows never loses it."""
        if self._slot and time.monotonic() - self._renewed_at > heartbeat_interval():
            slots.renew(self.tokens())
            self._renewed_at = time.monotonic()

    def _release(self) -> None:
        if self._slot:
            slots.release(self._slot[1])
            self._slot = None

    @contextmanager
    def slot(self, server, owner: str, *, timeout: float, should_stop):
        if self._in_use or (self._slot and self._slot[0] != server.pk):
            if self._in_use:  # a second server inside the block: an ordinary, unshared slot
                token = slots.acquire(server, owner, timeout=timeout, should_stop=should_stop)
                try:
                    yield token
                finally:
                    slots.release(token)
                return
            if self._pool is not None:
                self._pool.close()  # the open association belongs to the slot given up now
            self._release()
        if self._slot is None:
            self._slot = (server.pk, slots.acquire(server, owner, timeout=timeout, should_stop=should_stop))
            self._renewed_at = time.monotonic()
        self._in_use = True
        try:
            yield self._slot[1]
        finally:
            self._in_use = False


class ItemContext:
    def __init__(self, item, worker: str, session: WorkerSession | None = None, cancel: CancelWatch | None = None,
                 memo: dict | None = None):
        self.item, self.job, self.worker = item, item.job, worker
        self.session = session
        self._memo = {} if memo is None else memo  # shared by the items of one batch (per_batch)
        self.log = item_logger(item)
        self.lease_lost = False  # another worker reclaimed the item: stop, our outcome will not count
        self._slot_tokens: set[str] = set()
        self._slots_renewed_at = 0.0  # (monotonic) the slots' leases last renewed by heartbeat()
        self._lock = threading.Lock()
        self._cancel = cancel or CancelWatch(type(item.job), item.job.pk)
        # What the runner writes with the item's outcome, in the same transaction and only while the item
        # is still ours (save_with_outcome, write_with_outcome).
        self.outcome_fields: set[str] = set()
        self.outcome_writes: list = []
        # Set once the item should stop (canceled, or the lease lost), by the heartbeat thread within
        # CANCEL_CHECK_SECONDS: a DICOM transfer blocked in the network watches it and cancels itself.
        self.stop_requested = threading.Event()

    def _mine(self):
        return type(self.item).objects.filter(pk=self.item.pk, status=ItemStatus.RUNNING, worker=self.worker,
                                              attempts=self.item.attempts)

    def next_attempt(self) -> bool:
        """Count one more attempt of this run; False if the item is no longer ours."""
        if not self._mine().update(attempts=F("attempts") + 1, heartbeat_at=timezone.now()):
            self.lease_lost = True
            return False
        self.item.attempts += 1
        return True

    def heartbeat(self, **progress) -> None:
        """Prove we are alive (renews the item's lease and our association slots); keyword arguments are
        merged into item.result so a long item shows partial progress."""
        fields = {"heartbeat_at": timezone.now()}
        if progress:
            self.item.result.update(progress)
            fields["result"] = self.item.result
        if not self._mine().update(**fields):
            self.lease_lost = True
        # The slots' leases are as long as the item's; renewed at the heartbeat thread's pace, not at every
        # progress note (a retrieval notes each series it files: a second write each, on the row's path).
        if time.monotonic() - self._slots_renewed_at >= heartbeat_interval():
            with self._lock:
                tokens = set(self._slot_tokens) | (self.session.tokens() if self.session else set())
            slots.renew(tokens)
            self._slots_renewed_at = time.monotonic()

    def should_stop(self) -> bool:
        """True once the job was canceled (or this worker lost the item); process() should then raise
        ItemCanceled at a safe point."""
        return self.lease_lost or self._cancel()

    def save_with_outcome(self, *fields: str) -> None:
        """Save these item fields with the item's outcome (batched with other items' outcomes) instead of
        now; nothing is saved if the item is no longer ours by then."""
        self.outcome_fields.update(fields)

    def write_with_outcome(self, writer, payload) -> None:
        """Call `writer([(item, payload), ...])` inside the transaction that records the outcome, once for
        every item of the batch that registered the same writer and is still ours: one bulk write for
        what many items found (the writer replaces what an earlier run of its items wrote)."""
        self.outcome_writes.append((writer, payload))

    def start_attempt(self) -> None:
        """Forget what an earlier attempt of this run left to write with the outcome. The fields to save stay:
        they are saved with the item's values as they are when the outcome is written, the latest attempt's."""
        self.outcome_writes.clear()

    def per_batch(self, key, compute):
        """compute(), once for all the items of the worker's batch that ask with the same `key` (the batch
        loads its job and servers fresh, so an answer kept here is as fresh as they are): what every row of
        a list asks alike, such as whether the job's owner may still use its server, costs one answer per
        batch instead of one per row."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def wait(self, seconds: float) -> None:
        """Sleep, but wake up early when asked to stop."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.should_stop():
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    @contextmanager
    def association_slot(self, server=None, *, timeout: float | None = None):
        """Hold one of the server's max_associations slots (default: item.server()) for the block."""
        server = server or self.item.server()
        if timeout is None:
            timeout = server.download_timeout
        if self.session is not None:
            with self.session.slot(server, f"{self.worker}:{self.item.pk}", timeout=timeout,
                                   should_stop=self.should_stop):
                yield
            return
        token = slots.acquire(server, f"{self.worker}:{self.item.pk}", timeout=timeout,
                              should_stop=self.should_stop)
        with self._lock:
            self._slot_tokens.add(token)
        try:
            yield
        finally:
            with self._lock:
                self._slot_tokens.discard(token)
            slots.release(token)

    @contextmanager
    def heartbeats(self):
        """Run a thread that calls heartbeat() every JOB_LEASE_SECONDS/4 while the block runs, and sets
        stop_requested as soon as should_stop() says so."""
        done = threading.Event()

        def beat():
            last_beat = time.monotonic()
            try:
                while not done.wait(CANCEL_CHECK_SECONDS):
                    try:
                        if time.monotonic() - last_beat >= heartbeat_interval():
                            last_beat = time.monotonic()
                            self.heartbeat()
                        if self.should_stop():
                            self.stop_requested.set()
                    except Exception as exc:  # a missed beat is survivable; the next one may pass
                        self.log.warning("heartbeat failed: %s", type(exc).__name__)
            finally:
                connections.close_all()  # this thread's own connections only

        thread = threading.Thread(target=beat, name=f"heartbeat-{self.item.pk}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()
