"""The generic runner in one process: claim, outcomes, retries, cancel, retry, reclaim, logs.
Item work is an EchoItem whose registered processor the test replaces; the runner is the thing under test."""
import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.dicom.errors import AssociationRejected, ConnectionFailed, DicomTimeout
from apps.jobs import registry
from apps.jobs.context import ItemContext
from apps.jobs.errors import ItemCanceled, ItemFailed, ItemTimedOut
from apps.jobs.models import AssociationSlot, JobStatus
from apps.jobs.runner import reclaim_stale, run_item
from apps.servers.models import EchoItem
from tests.jobs.conftest import make_echo_job, make_server

LABEL = "servers.EchoItem"


@pytest.fixture
def job(db):
    server = make_server("LK", 104)
    return make_echo_job([server] * 3)


def behave(monkeypatch, *behaviours):
    """Item i (in pk order) runs behaviours[i](item, ctx)."""
    def process(item, ctx):
        first = EchoItem.objects.filter(job=item.job).order_by("pk").first().pk
        behaviours[item.pk - first](item, ctx)
    monkeypatch.setitem(registry.PROCESSORS, LABEL, process)


def run_all(job):
    job.start()
    for item in job.items.order_by("pk"):
        run_item(LABEL, item.pk)
    job.refresh_from_db()
    return job


def ok(item, ctx):
    item.result["elapsed_ms"] = 1.5


def raiser(exc):
    def process(item, ctx):
        raise exc
    return process


def test_it_claims_an_item_once_when_two_workers_race(transactional_db, monkeypatch):
    job = make_echo_job([make_server("LK", 104)])
    calls = []

    def slow(item, ctx):
        calls.append(item.pk)
        time.sleep(0.3)
    monkeypatch.setitem(registry.PROCESSORS, LABEL, slow)
    job.start()
    pk = job.items.get().pk
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(run_item(LABEL, pk))) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert calls == [pk]
    assert sorted(outcomes) == ["not pending", "succeeded"]
    assert job.items.get().attempts == 1


def test_success_failure_and_timeout_make_a_partial_job_with_counters(job, monkeypatch):
    behave(monkeypatch, ok, raiser(ItemFailed("No such study on LK.")), raiser(DicomTimeout("LK did not answer in 30 s.")))
    job = run_all(job)
    items = list(job.items.order_by("pk"))
    assert [i.status for i in items] == ["succeeded", "failed", "timed_out"]
    assert items[0].result == {"elapsed_ms": 1.5}
    assert items[1].error == "No such study on LK." and items[2].error == "LK did not answer in 30 s."
    assert job.status == JobStatus.PARTIAL and job.completed_at is not None
    assert job.progress() == {"total": 3, "pending": 0, "running": 0, "succeeded": 1, "failed": 1,
                              "timed_out": 1, "canceled": 0}
    assert EchoItem.status_counts()["failed"] == 1
    assert type(job).status_counts()["partial"] == 1


def test_all_failed_is_failed_and_all_succeeded_is_succeeded(job, monkeypatch):
    behave(monkeypatch, raiser(ItemTimedOut("slow")), raiser(AssociationRejected("LK refused our AE title.")),
           raiser(ItemFailed("x")))
    assert run_all(job).status == JobStatus.FAILED
    assert job.items.order_by("pk")[1].error == "LK refused our AE title."

    behave(monkeypatch, ok, ok, ok)
    assert run_all(make_echo_job([make_server("B", 104)] * 3)).status == JobStatus.SUCCEEDED


def test_retriable_errors_are_retried_up_to_max_attempts(job, monkeypatch):
    monkeypatch.setattr(EchoItem, "max_attempts", lambda item: 3)
    tries = {}

    def flaky_twice(item, ctx):
        tries[item.pk] = tries.get(item.pk, 0) + 1
        if tries[item.pk] < 3:
            raise ConnectionFailed("Connection refused by LK.")

    behave(monkeypatch, flaky_twice, raiser(ConnectionFailed("Connection refused by LK.")),
           raiser(AssociationRejected("Rejected.")))
    job = run_all(job)
    first, always, rejected = job.items.order_by("pk")
    assert (first.status, first.attempts) == ("succeeded", 3)
    assert (always.status, always.attempts, always.error) == ("failed", 3, "Connection refused by LK.")
    assert (rejected.status, rejected.attempts) == ("failed", 1)  # not retriable: no second try


def test_a_timeout_that_stays_after_all_attempts_is_timed_out(job, monkeypatch):
    monkeypatch.setattr(EchoItem, "max_attempts", lambda item: 2)
    behave(monkeypatch, *[raiser(DicomTimeout("No answer."))] * 3)
    job = run_all(job)
    assert {(i.status, i.attempts) for i in job.items.all()} == {("timed_out", 2)}
    assert job.status == JobStatus.FAILED


def test_an_unexpected_exception_fails_the_item_with_a_short_message(job, monkeypatch):
    behave(monkeypatch, raiser(KeyError("secret")), ok, ok)
    job = run_all(job)
    crashed = job.items.order_by("pk").first()
    assert crashed.status == "failed"
    assert crashed.error == "Internal error (KeyError); the worker log has the details."


def test_cancel_stops_pending_items_and_asks_running_ones_to_stop(transactional_db, monkeypatch):
    job = make_echo_job([make_server("LK", 104)] * 3)
    stopped_by_request, working = threading.Event(), threading.Event()

    def until_stopped(item, ctx):
        working.set()
        for _ in range(100):
            if ctx.should_stop():
                stopped_by_request.set()
                raise ItemCanceled()
            time.sleep(0.05)
    monkeypatch.setitem(registry.PROCESSORS, LABEL, until_stopped)
    job.start()
    first = job.items.order_by("pk").first()
    worker = threading.Thread(target=run_item, args=(LABEL, first.pk))
    worker.start()
    assert working.wait(10), "the item is in process() (a cancel before that cancels it without running it)"
    assert job.cancel() == 2
    assert job.status == JobStatus.RUNNING  # one item still has to notice
    worker.join(timeout=10)
    assert stopped_by_request.is_set()
    assert [i.status for i in job.items.order_by("pk")] == ["canceled"] * 3
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED and job.cancel_requested
    assert run_item(LABEL, job.items.order_by("pk")[1].pk) == "not pending"  # its queue message is now a no-op


def test_retry_failed_runs_failed_and_timed_out_items_again(job, monkeypatch):
    behave(monkeypatch, ok, raiser(ItemFailed("down")), raiser(ItemTimedOut("slow")))
    job = run_all(job)
    assert job.status == JobStatus.PARTIAL
    behave(monkeypatch, raiser(AssertionError("succeeded items must not run again")), ok, ok)
    assert job.retry_failed() == 2
    assert job.status == JobStatus.RUNNING
    again = job.items.filter(status="pending")
    assert again.count() == 2 and set(again.values_list("attempts", "error")) == {(0, "")}
    for item in list(again):
        run_item(LABEL, item.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert [i.attempts for i in job.items.order_by("pk")] == [1, 1, 1]


def test_reclaim_requeues_items_whose_worker_stopped_beating(job, settings, broker):
    settings.JOB_LEASE_SECONDS = 5
    old = timezone.now() - timedelta(seconds=60)
    dead, fresh, poison = job.items.order_by("pk")
    EchoItem.objects.filter(pk=dead.pk).update(status="running", heartbeat_at=old, worker="gone:1", attempts=1)
    EchoItem.objects.filter(pk=fresh.pk).update(status="running", heartbeat_at=timezone.now(), worker="alive:2",
                                                attempts=1)
    EchoItem.objects.filter(pk=poison.pk).update(status="running", heartbeat_at=old, worker="gone:1", attempts=3)
    assert reclaim_stale() == 1
    dead.refresh_from_db(), fresh.refresh_from_db(), poison.refresh_from_db()
    assert (dead.status, dead.worker) == ("pending", "")
    assert fresh.status == "running"
    assert poison.status == "failed" and "stopped 3 times" in poison.error
    assert broker.queue_size() == 1  # one message, for the dead worker's item
    assert reclaim_stale() == 0  # the second sweep finds nothing new


def test_reclaim_requeues_pending_items_whose_message_was_lost(job, settings, broker):
    settings.JOB_LEASE_SECONDS = 5
    job.start()  # in a test transaction the queue messages are never sent: as if a killed cluster held them
    assert broker.queue_size() == 0
    assert reclaim_stale() == 0  # queued just now: give the queue a lease's time
    job.items.update(queued_at=timezone.now() - timedelta(seconds=60))
    drivers = min(3, job.parallelism())  # one message per worker the job may use, not one per item
    assert reclaim_stale() == drivers
    assert broker.queue_size() == drivers
    job.items.update(queued_at=timezone.now() - timedelta(seconds=60))
    assert reclaim_stale() == 0  # messages are waiting on the broker: nothing is lost


@pytest.mark.django_db(transaction=True)
def test_a_sweep_finding_nothing_stale_keeps_the_database_connection(settings):
    """A worker sweeps between its jobs' batches: asking django-q's ORM broker (only needed when items
    look forgotten) closes the connection, and reopening it cost a running job ~25 ms."""
    make_echo_job([make_server("LK", 104)]).start()
    connection.ensure_connection()
    before = connection.connection
    assert reclaim_stale() == 0
    assert connection.connection is before


def test_a_heartbeat_renews_the_slots_at_the_heartbeat_pace(job, settings):
    """Every heartbeat renews the item's lease; the association slots' leases, as long, are renewed at the
    heartbeat thread's pace: not at each progress note, never less often than the thread beats."""
    settings.JOB_LEASE_SECONDS = 4  # a beat every second
    item = job.items.order_by("pk").first()
    EchoItem.objects.filter(pk=item.pk).update(status="running", worker="me:1", attempts=1)
    item.refresh_from_db()
    ctx = ItemContext(item, "me:1")

    def slot_expiry():
        return AssociationSlot.objects.get(holder__in=ctx._slot_tokens).expires_at

    with ctx.association_slot(timeout=5):
        taken = slot_expiry()
        ctx.heartbeat()
        renewed = slot_expiry()
        ctx.heartbeat(done=1)
        assert renewed > taken and slot_expiry() == renewed, "a progress note right after: the slot as it was"
        time.sleep(1.1)
        ctx.heartbeat(done=2)
        assert slot_expiry() > renewed
    item.refresh_from_db()
    assert item.result["done"] == 2 and item.heartbeat_at is not None


def test_patient_data_stays_out_of_logs_above_debug(job, monkeypatch, caplog):
    patient = "DOE^JANE 0123456789"

    def leaky(item, ctx):
        ctx.log.debug("looking for %s", patient)
        raise ItemFailed(f"No study for {patient} on LK.")

    def crash(item, ctx):
        raise ValueError(patient)

    behave(monkeypatch, leaky, crash, ok)
    caplog.set_level(logging.INFO)
    job = run_all(job)
    assert patient in job.items.order_by("pk").first().error  # the user still sees why
    assert caplog.records, "the runner logs its events"
    assert patient not in caplog.text
    first = job.items.order_by("pk").first()
    runner_lines = [r.getMessage() for r in caplog.records if r.name == "apps.jobs"]
    assert f"job=servers.EchoJob:{job.pk} item={first.pk} started attempt 1" in "\n".join(runner_lines)
    assert all(line.startswith(f"job=servers.EchoJob:{job.pk} item=") for line in runner_lines)

    caplog.clear()
    caplog.set_level(logging.DEBUG)
    job.retry_failed()
    run_item(LABEL, first.pk)
    assert patient in caplog.text  # at DEBUG it is there, so the INFO check above is meaningful
