"""Job API (/api/echo-jobs/, cancel, retry, progress) and the reusable job admin."""
import pytest

from apps.audit.models import AuditEvent
from apps.jobs.runner import run_item
from apps.servers.models import EchoItem, EchoJob
from tests.jobs.conftest import make_echo_job, make_server

pytestmark = pytest.mark.django_db
JOB_KEYS = {"id", "status", "urgent", "notify", "paused", "waiting", "description", "created_at", "started_at", "completed_at",
            "progress", "items"}


def test_post_starts_an_echo_job_over_every_server(api, user, echo_scp):
    make_server("LK", echo_scp.port)
    make_server("DOWN", 1)  # nothing listens on port 1
    created = api.post("/api/echo-jobs/")
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == JOB_KEYS and body["status"] == "running"
    assert body["progress"] == {"total": 2, "pending": 2, "running": 0, "succeeded": 0, "failed": 0,
                                "timed_out": 0, "canceled": 0}
    assert {i["server_name"] for i in body["items"]} == {"LK", "DOWN"}
    assert AuditEvent.objects.get(action="job.started").actor == user

    for item in EchoItem.objects.all():  # what the workers do (tests/jobs/test_cluster.py runs real ones)
        run_item("servers.EchoItem", item.pk)
    shown = api.get(f"/api/echo-jobs/{body['id']}/").json()
    assert shown["status"] == "partial" and shown["completed_at"]
    items = {i["server_name"]: i for i in shown["items"]}
    assert items["LK"]["status"] == "succeeded" and items["LK"]["result"]["elapsed_ms"] > 0
    assert items["DOWN"]["status"] == "failed" and "DOWN" in items["DOWN"]["error"]
    assert echo_scp.echoes["LK"] == 1


def test_cancel_and_retry_endpoints(api, user):
    job = make_echo_job([make_server("LK", 104)] * 2, user=user)
    job.start()
    canceled = api.post(f"/api/echo-jobs/{job.pk}/cancel/")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert canceled.json()["progress"]["canceled"] == 2
    job.items.update(status="failed", error="down")
    retried = api.post(f"/api/echo-jobs/{job.pk}/retry/")
    assert retried.status_code == 200 and retried.json()["progress"]["pending"] == 2
    assert api.post("/api/echo-jobs/999/cancel/").status_code == 404


def test_progress_endpoint_serves_any_job_type_and_nothing_else(api, user):
    job = make_echo_job([make_server("LK", 104)] * 3, user=user)
    response = api.get(f"/api/jobs/servers/echojob/{job.pk}/progress")
    assert response.status_code == 200
    assert response.json()["progress"]["total"] == 3 and response.json()["status"] == "pending"
    assert api.get(f"/api/jobs/jobs/echoitem/{job.pk}/progress").status_code == 404  # an item is not a job
    assert api.get(f"/api/jobs/auth/user/{job.pk}/progress").status_code == 404
    assert api.get("/api/jobs/servers/echojob/999/progress").status_code == 404


def test_admin_lists_jobs_with_live_progress_and_cancel_retry_actions(admin_client_logged_in):
    client = admin_client_logged_in
    job = make_echo_job([make_server("LK", 104)] * 4)
    job.start()
    job.items.filter(pk=job.items.first().pk).update(status="failed", error="LK refused")
    listing = client.get("/admin/servers/echojob/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert f'data-url="/api/jobs/servers/echojob/{job.pk}/progress"' in page and "setInterval(tick, 2000)" in page
    assert "1/4 done · 3 pending · 1 failed" in page and "Echo every server now" in page

    detail = client.get(f"/admin/servers/echojob/{job.pk}/change/").content.decode()
    assert "LK refused" in detail and "job-progress" in detail  # read-only item inline + live bar
    assert 'name="_save"' not in detail and 'name="_continue"' not in detail

    client.post("/admin/servers/echojob/", {"action": "retry_failed_items", "_selected_action": [job.pk]})
    assert job.items.filter(status="pending").count() == 4
    client.post("/admin/servers/echojob/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == "canceled"
    assert list(AuditEvent.objects.values_list("action", "actor")) == [
        ("job.canceled", client.user.pk), ("job.retried", client.user.pk), ("job.started", None)]
    assert client.get("/admin/servers/echojob/add/").status_code == 403


def test_admin_button_echoes_every_server(admin_client_logged_in):
    make_server("LK", 104), make_server("B", 105)
    response = admin_client_logged_in.post("/admin/servers/echojob/run/")
    job = EchoJob.objects.get()
    assert response.status_code == 302 and response.url == f"/admin/servers/echojob/{job.pk}/change/"
    assert job.status == "running" and job.created_by == admin_client_logged_in.user
    assert job.items.count() == 2
