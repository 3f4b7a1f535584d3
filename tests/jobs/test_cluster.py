"""The runner in real django-q2 clusters on the shared SQLite file: a SIGKILLed cluster loses nothing
and runs nothing twice; two workers on ~30 items never hit "database is locked"."""
import time

import pytest
from django_q.models import Task

from apps.jobs.models import JobStatus
from apps.servers.models import EchoItem
from tests.jobs.cluster import QCluster, wait_for
from tests.jobs.conftest import make_echo_job, make_server
from tests.jobs.peers import RecordingEchoSCP

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = 3


@pytest.fixture
def slow_scp():
    scp = RecordingEchoSCP(delay=1.5)
    yield scp
    scp.shutdown()


def test_a_sigkilled_cluster_loses_no_item_and_runs_none_twice(slow_scp, tmp_path):
    servers = [make_server(f"S{n}", slow_scp.port) for n in range(1, 9)]
    job = make_echo_job(servers)
    first = QCluster(tmp_path / "first.log", JOB_LEASE_SECONDS=LEASE, Q_WORKERS=2)
    try:
        job.start()

        def mid_job():  # some echoes done, one half-way through on the PACS side
            in_flight = {ae for ae, n in slow_scp.echoes.items() if n > slow_scp.answered[ae]}
            return in_flight if sum(slow_scp.answered.values()) >= 2 else None
        in_flight = wait_for(mid_job, 60, "an echo in flight after two finished")
        first.kill()
    finally:
        first.stop()
    running_at_kill = {i.server_name: i.worker for i in EchoItem.objects.filter(job=job, status="running")}
    assert in_flight <= set(running_at_kill), (in_flight, running_at_kill)

    time.sleep(LEASE + 0.5)  # the new cluster comes up after the lease: its first sweep finds everything
    second = QCluster(tmp_path / "second.log", JOB_LEASE_SECONDS=LEASE, Q_WORKERS=2)
    try:
        wait_for(lambda: job.__class__.objects.get(pk=job.pk).status in ("succeeded", "failed", "partial"),
                 90, "the job to finish on the second cluster")
    finally:
        second.stop()

    job.refresh_from_db()
    items = {i.server_name: i for i in job.items.all()}
    assert job.status == JobStatus.SUCCEEDED, {n: (i.status, i.error) for n, i in items.items()}
    assert all(i.status == "succeeded" and i.result["elapsed_ms"] > 0 for i in items.values())
    for name, item in items.items():
        if name in running_at_kill:
            assert item.attempts == 2, name
            assert item.worker != running_at_kill[name]  # finished by a worker of the second cluster
        else:
            assert item.attempts == 1, name
            assert slow_scp.echoes[name] == 1, name  # side effect exactly once
    for name in in_flight:
        assert slow_scp.echoes[name] == 2  # the interrupted echo, then the one that finished
    recovery = second.output()
    assert "stopped answering" in recovery  # the running items, by their stale heartbeat
    # the pending items whose messages the killed cluster had taken: the re-queued running items' workers
    # go on to them (run_item drives the job), or, when none ran, the job is re-queued as never started
    assert "never started; job re-queued" in recovery or "stopped answering" in recovery


def test_two_workers_run_thirty_items_on_sqlite_without_lock_errors(echo_scp, tmp_path, broker):
    server = make_server("LK", echo_scp.port, max_associations=2)
    job = make_echo_job([server] * 30)
    cluster = QCluster(tmp_path / "cluster.log", Q_WORKERS=2)
    try:
        job.start()
        wait_for(lambda: job.__class__.objects.get(pk=job.pk).status != "running", 120, "the job to finish")
    finally:
        cluster.stop()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, cluster.output()[-3000:]
    assert job.progress()["succeeded"] == 30
    assert set(job.items.values_list("attempts", flat=True)) == {1}
    assert len(set(job.items.values_list("worker", flat=True))) == 2  # both workers took part
    assert echo_scp.most_open <= 2 and sum(echo_scp.echoes.values()) == 30
    # one broker message per worker drove all thirty items (the runner claims the next one itself)
    assert Task.objects.filter(func="apps.jobs.runner.run_item", success=True).count() == 2
    assert not Task.objects.filter(success=False).exists()
    assert "database is locked" not in cluster.output().lower()
