"""Jobs travel through the broker Q_BROKER names. With `orm` (the default, `make test`) queued items wait
in the database's OrmQ table; with `redis://…` (`make test-scaleout`) they wait in that Redis server's
list, the database queue stays empty, and a real qcluster process drains the Redis list."""
import pytest
import redis
from django.conf import settings
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.models import OrmQ, Task

from apps.jobs.models import JobStatus
from apps.jobs.runner import RUN_ITEM
from tests.jobs.cluster import QCluster, wait_for
from tests.jobs.conftest import make_echo_job, make_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_items_travel_through_the_broker_q_broker_names(broker, echo_scp, tmp_path):
    job = make_echo_job([make_server("LK", echo_scp.port)] * 3)
    job.start()
    drivers = min(3, job.parallelism())  # one message per worker the job may use; each runs items in turn
    if settings.Q_BROKER == "orm":
        assert type(broker) is ORM
        assert OrmQ.objects.count() == drivers
    else:
        assert type(broker) is Redis
        assert OrmQ.objects.count() == 0
        # A separate client on the configured URL finds the messages on that very server.
        assert redis.from_url(settings.Q_BROKER).llen(broker.list_key) == drivers
    assert broker.queue_size() == drivers

    cluster = QCluster(tmp_path / "cluster.log", Q_WORKERS=2)
    try:
        wait_for(lambda: job.__class__.objects.get(pk=job.pk).status != "running", 60, "the job to finish")
    finally:
        cluster.stop()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, cluster.output()[-3000:]
    assert sum(echo_scp.echoes.values()) == 3
    assert broker.queue_size() == 0 and not OrmQ.objects.exists()
    assert Task.objects.filter(func=RUN_ITEM, success=True).count() == drivers
