"""/healthz names a worker stuck in one item (apps/jobs/health.py): an item whose heartbeat is older than
the lease, and an item running past JOB_STUCK_SECONDS with its heartbeat alive; first on rows set by
hand, then in a real django-q2 cluster blocked in a slow echo and then SIGKILLed."""
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.servers.models import EchoItem
from tests.jobs.cluster import QCluster, wait_for
from tests.jobs.conftest import make_echo_job, make_server
from tests.jobs.peers import RecordingEchoSCP


@pytest.fixture
def quiet_portal(settings, tmp_path):
    settings.DATA_DIR = tmp_path  # no runportal status file: only the database speaks
    settings.JOB_LEASE_SECONDS = 60
    settings.JOB_STUCK_SECONDS = 3600
    return settings


def _running(item, *, started_ago: float, beat_ago: float, worker="host:41"):
    now = timezone.now()
    EchoItem.objects.filter(pk=item.pk).update(status="running", worker=worker, attempts=1,
                                               started_at=now - timedelta(seconds=started_ago),
                                               heartbeat_at=now - timedelta(seconds=beat_ago))


@pytest.mark.django_db
def test_a_busy_worker_with_a_fresh_heartbeat_is_healthy(client, quiet_portal):
    item = make_echo_job([make_server("LK", 104)]).items.get()
    _running(item, started_ago=3000, beat_ago=5)
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_an_item_whose_heartbeat_is_older_than_the_lease_is_reported(client, quiet_portal):
    item = make_echo_job([make_server("LK", 104)]).items.get()
    _running(item, started_ago=100, beat_ago=90, worker="node2:4242")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down" and body["down"] == ["workers"] and body["parts"] == {"workers": "down"}
    assert f"worker node2:4242 in servers.EchoItem {item.pk}: no heartbeat for 90 s (lease 60 s)" in body["message"]


@pytest.mark.django_db
def test_an_item_running_past_the_bound_with_its_heartbeat_alive_is_reported(client, quiet_portal):
    item = make_echo_job([make_server("LK", 104)]).items.get()
    _running(item, started_ago=3700, beat_ago=2)
    body = client.get("/healthz").json()
    assert body["down"] == ["workers"]
    assert f"servers.EchoItem {item.pk}: running for 3700 s with its heartbeat alive" in body["message"]
    quiet_portal.JOB_STUCK_SECONDS = 0  # the bound turned off: only the lease counts
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_finished_and_pending_items_are_never_reported(client, quiet_portal):
    job = make_echo_job([make_server("LK", 104)] * 2)
    old = timezone.now() - timedelta(days=2)
    job.items.update(started_at=old, heartbeat_at=old)  # pending, and then finished, long ago
    assert client.get("/healthz").status_code == 200
    job.items.update(status="succeeded")
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_blocked_in_one_item_then_killed_is_reported(client, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.JOB_LEASE_SECONDS, settings.JOB_STUCK_SECONDS = 3, 2
    scp = RecordingEchoSCP(delay=12)  # an echo answered only after 12 s: the worker sits in one item
    cluster = QCluster(tmp_path / "cluster.log", JOB_LEASE_SECONDS=3, Q_WORKERS=1)
    try:
        make_echo_job([make_server("SLOW", scp.port)]).start()

        def message():
            response = client.get("/healthz")
            return response.json().get("message", "") if response.status_code == 503 else ""
        blocked = wait_for(lambda: "heartbeat alive" in message() and message(), 60, "healthz to name the blocked worker")
        assert "in servers.EchoItem" in blocked and "running for" in blocked
        cluster.kill()
        dead = wait_for(lambda: "no heartbeat for" in message() and message(), 30, "healthz to name the dead worker")
        assert "(lease 3 s)" in dead
    finally:
        cluster.stop()
        scp.shutdown()
