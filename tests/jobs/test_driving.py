"""A worker drives a job: one broker message runs item after item, on one association slot and one open
association; a huge job is a handful of messages, a cancel leaves nothing that delays others, and a
worker gives way to another job's waiting items after its time slice."""
import pytest
from django_q.models import OrmQ

from apps.jobs.models import AssociationSlot, JobStatus
from apps.jobs.runner import run_item
from apps.servers.models import EchoJob
from tests.jobs.conftest import make_echo_job, make_server

LABEL = "servers.EchoItem"
pytestmark = pytest.mark.django_db


def queued_items(broker) -> list[int]:
    """The item pks named by the messages waiting on the configured broker (the ORM's table, or the Redis
    list in `make test-scaleout`), in queue order."""
    from django_q.signing import SignedPackage

    if hasattr(broker, "connection") and hasattr(broker.connection, "lrange"):
        payloads = broker.connection.lrange(broker.list_key, 0, -1)
    else:
        payloads = [m.payload for m in OrmQ.objects.order_by("id")]
    return [SignedPackage.loads(payload)["args"][1] for payload in payloads]


def test_one_message_runs_every_item_of_the_job_on_one_association(echo_scp, broker,
                                                                    django_capture_on_commit_callbacks):
    server = make_server("LK", echo_scp.port, max_associations=1)
    job = make_echo_job([server] * 20)
    with django_capture_on_commit_callbacks(execute=True):
        job.start()
    assert broker.queue_size() == job.parallelism() == 2, "one message per worker, not one per item"
    first, second = queued_items(broker)
    run_item(LABEL, first)
    assert run_item(LABEL, second) == "not pending", "the first message's worker ran them all"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.progress()["succeeded"] == 20
    assert sum(echo_scp.echoes.values()) == 20
    assert echo_scp.opened == 1, "the association was kept from item to item"
    assert not AssociationSlot.objects.exclude(holder="").exists(), "the slot is released when the worker stops"


def test_a_huge_job_is_a_few_messages_and_a_cancel_leaves_nothing_in_the_way(echo_scp, broker, settings,
                                                                              django_capture_on_commit_callbacks):
    settings.JOB_SLICE_SECONDS = 0  # give way after every item whenever another job waits
    server = make_server("LK", echo_scp.port, max_associations=2)
    big = make_echo_job([server] * 1000)
    with django_capture_on_commit_callbacks(execute=True):
        big.start()
    assert broker.queue_size() == big.parallelism() == 2, "not one message per item"
    big.cancel()
    small = make_echo_job([server])
    with django_capture_on_commit_callbacks(execute=True):
        small.start()
    for pk in queued_items(broker):  # what a worker would pop: the big job's two no-ops, then the small job
        run_item(LABEL, pk)
    small.refresh_from_db()
    big.refresh_from_db()
    assert small.status == JobStatus.SUCCEEDED and big.status == JobStatus.CANCELED
    assert sum(echo_scp.echoes.values()) == 1, "no canceled item ran"


def test_a_worker_gives_way_to_another_jobs_waiting_item_after_its_slice(echo_scp, broker, settings,
                                                                         django_capture_on_commit_callbacks):
    settings.JOB_SLICE_SECONDS = 0
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}  # one worker, shared by the two jobs
    server = make_server("LK", echo_scp.port, max_associations=1)
    big, small = make_echo_job([server] * 50), make_echo_job([server])
    with django_capture_on_commit_callbacks(execute=True):
        big.start()
        small.start()
    first_big, first_small = queued_items(broker)
    broker.purge_queue()
    run_item(LABEL, first_big)  # one item, then the small job waits: the big one goes back on the queue
    assert big.progress()["succeeded"] == 1
    (again,) = queued_items(broker)
    assert EchoJob.objects.get(items__pk=again) == big
    run_item(LABEL, first_small)
    assert EchoJob.objects.get(pk=small.pk).status == JobStatus.SUCCEEDED
    run_item(LABEL, again)  # alone now: it runs to the end without giving way
    assert big.progress()["succeeded"] == 50 and broker.queue_size() == 1  # only its own give-way message
    assert EchoJob.objects.get(pk=big.pk).status == JobStatus.SUCCEEDED


def test_a_worker_keeps_its_slot_leased_between_short_items(echo_scp, settings):
    from apps.jobs.context import WorkerSession

    settings.JOB_LEASE_SECONDS = 2  # a beat every 0.5 s
    server = make_server("LK", echo_scp.port, max_associations=1)
    with WorkerSession("test-worker") as session:
        with session.slot(server, "test-worker:1", timeout=5, should_stop=lambda: False):
            pass
        first = AssociationSlot.objects.get(holder__in=session.tokens()).expires_at
        import time
        time.sleep(0.6)
        session.keep_alive()
        assert AssociationSlot.objects.get(holder__in=session.tokens()).expires_at > first
    assert not AssociationSlot.objects.exclude(holder="").exists()
