"""What the collector derives from the job records, with times set exactly: the duration histogram's
buckets and sum, the queue's depth and oldest item, and the JSON counters kept as they were."""
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.health import status_path
from apps.core.metrics import job_counters
from apps.dicom.supervisor import Supervisor
from apps.jobs.models import ItemStatus
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer
from tests.jobs.cluster import wait_for
from tests.metrics.conftest import TOKEN, Scraper, value

pytestmark = pytest.mark.django_db
LABELS = {"app": "retrieval", "job": "retrievaljob"}


@pytest.fixture
def rows(db):
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    job = RetrievalJob.objects.create(status="running", started_at=timezone.now())
    now = timezone.now()

    def item(line, status, seconds=None, queued_ago=None):
        started = now - timedelta(hours=5)
        return RetrievalItem.objects.create(
            job=job, line=line, dicom_server=server, server_name="LK", status=status,
            started_at=started if seconds is not None else None,
            finished_at=started + timedelta(seconds=seconds) if seconds is not None else None,
            queued_at=now - timedelta(seconds=queued_ago) if queued_ago is not None else None)
    for line, seconds in enumerate([0.5, 10, 100, 5000], start=2):
        item(line, ItemStatus.SUCCEEDED, seconds)
    item(6, ItemStatus.FAILED, 3)
    item(7, ItemStatus.PENDING, queued_ago=600)
    item(8, ItemStatus.PENDING, queued_ago=30)
    return job


def scrape(client, settings) -> dict:
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return Scraper("", TOKEN).samples(response.content.decode())


def test_durations_fall_into_their_buckets(client, settings, rows):
    samples = scrape(client, settings)

    def bucket(le, outcome="succeeded"):
        return value(samples, "pacsportal_item_duration_seconds_bucket", outcome=outcome, le=le, **LABELS)
    assert [bucket(le) for le in ("1", "5", "15", "60", "300", "900", "3600", "14400", "+Inf")] \
        == [1, 1, 2, 2, 3, 3, 3, 4, 4]
    assert value(samples, "pacsportal_item_duration_seconds_sum", outcome="succeeded", **LABELS) == pytest.approx(5110.5)
    assert bucket("5", "failed") == 1 and bucket("1", "failed") == 0


def test_the_queue_shows_its_depth_and_its_oldest_item(client, settings, rows):
    samples = scrape(client, settings)
    assert value(samples, "pacsportal_queue_depth", **LABELS) == 2
    assert 600 <= value(samples, "pacsportal_queue_oldest_seconds", **LABELS) < 900
    assert value(samples, "pacsportal_jobs", status="running", **LABELS) == 1


def test_the_json_counters_are_what_they_were(admin_client_logged_in, rows):
    body = admin_client_logged_in.get("/metrics?format=json").json()
    assert body == job_counters()
    assert body["retrieval.retrievalitem.by_status"] == {"pending": 2, "running": 0, "succeeded": 4, "failed": 1,
                                                         "timed_out": 0, "canceled": 0}
    assert body["retrieval.retrievaljob.by_status"]["running"] == 1


def test_restarts_come_from_the_supervisors_status_file(client, settings, tmp_path):
    """A real supervisor (as runportal runs it) restarting a real process that dies: /metrics counts it."""
    settings.DATA_DIR = tmp_path
    supervisor = Supervisor({"workers": [sys.executable, "-c", "raise SystemExit(2)"],
                             "web": [sys.executable, "-c", "import time; time.sleep(60)"]},
                            cwd=settings.BASE_DIR, status_path=status_path(), say=lambda line: None,
                            first_delay=0.01, max_delay=0.02)
    supervisor.start_all()
    try:
        wait_for(lambda: supervisor.poll() or supervisor.children[0].restarts >= 2, 30, "two restarts")
        samples = scrape(client, settings)
    finally:
        supervisor.stop_all()
    assert value(samples, "pacsportal_process_restarts_total", part="workers") >= 2
    assert value(samples, "pacsportal_process_restarts_total", part="web") == 0
    assert value(samples, "pacsportal_process_up", part="web") == 1


def test_a_portal_without_any_job_scrapes_clean(client, settings, db):
    settings.METRICS_TOKEN = TOKEN
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'pacsportal_jobs{app="retrieval",job="retrievaljob",status="pending"} 0.0' in text
