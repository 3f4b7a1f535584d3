"""The admin home page's dashboard figures (dashboard.json): jobs under the job access rule, instances per
hour from real item rows, failures with their first error, free space of the data folders, health from
runportal's status file, and no patient identifier anywhere in the answer."""
import json
import os
import shutil
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from apps.core.health import status_path
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.sending.models import SendItem, SendJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db
URL = "/admin/dashboard.json"
PATIENT = "DASHPAT-4711"


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user("tech", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["retrieval", "sending"]))
    return user


def retrieval(user, status="running", **item):
    server, _ = DicomServer.objects.get_or_create(name="LK", defaults={"ae_title": "LK", "host": "127.0.0.1",
                                                                        "port": 104})
    job = RetrievalJob.objects.create(created_by=user, status=status, source_name="list.csv", description="weekly")
    RetrievalItem.objects.create(job=job, line=1, patient_id=PATIENT, study_date="20250101", server_name="LK",
                                 dicom_server=server, **item)
    return job


def more(job, line, **item):
    return job.items.create(line=line, patient_id=PATIENT, server_name="LK", dicom_server=job.items.first().dicom_server,
                            **item)


def get(client, user):
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_user_sees_own_running_jobs_with_progress_and_why_they_wait(client, staff, django_user_model):
    other = django_user_model.objects.create_user("other", password="pw")
    mine = retrieval(staff)
    more(mine, 2, status="succeeded", instances=3)
    mine.items.filter(line=1).update(waiting="waiting for the window of LK, opens at 20:00")
    retrieval(other)
    data = get(client, staff)
    assert [row["job"] for row in data["jobs"]] == [str(mine)], "another account's job is not there"
    row = data["jobs"][0]
    assert (row["total"], row["done"], row["failed"]) == (2, 1, 0)
    assert "opens at 20:00" in row["state"] and row["link"] == f"/admin/retrieval/retrievaljob/{mine.pk}/change/"


def test_view_all_jobs_sees_every_account_and_urgent_comes_first(client, staff, django_user_model):
    staff.user_permissions.add(Permission.objects.get(codename="view_all_jobs"))
    other = django_user_model.objects.create_user("other", password="pw")
    first = retrieval(staff)
    urgent = retrieval(other)
    RetrievalJob.objects.filter(pk=urgent.pk).update(urgent=True)
    data = get(client, staff)
    assert [row["job"] for row in data["jobs"]] == [str(urgent), str(first)]
    assert data["jobs"][0]["urgent"] is True and "urgent" in data["jobs"][0]["state"]


def test_instances_per_hour_counts_what_items_moved_by_app(client, staff):
    now = timezone.now()
    job = retrieval(staff, status="succeeded", instances=120, finished_at=now - timedelta(minutes=5))
    more(job, 2, instances=30, finished_at=now - timedelta(hours=2))
    more(job, 3, instances=999, finished_at=now - timedelta(hours=30))
    send = SendJob.objects.create(created_by=staff, status="succeeded")
    SendItem.objects.create(job=send, batch=1, sent=7, finished_at=now - timedelta(minutes=1))
    chart = get(client, staff)["throughput"]
    assert len(chart["hours"]) == 24
    retrieved, sent = chart["apps"]["Retrieval from PACS"], chart["apps"]["Send to PACS"]
    assert sum(retrieved) == 150, "the item of 30 hours ago is outside the day"
    assert retrieved[-2] + retrieved[-1] == 120 and retrieved[-3] == 30, "each in the hour it finished"
    assert sum(sent) == 7 and sent[-2] + sent[-1] == 7


def test_failures_of_the_last_day_need_attention_with_their_first_error(client, staff):
    now = timezone.now()
    failed = retrieval(staff, status="partial", error="The PACS refused the move (0xA801).")
    RetrievalJob.objects.filter(pk=failed.pk).update(completed_at=now - timedelta(hours=1))
    failed.items.update(status="failed")
    old = retrieval(staff, status="failed", error="old")
    RetrievalJob.objects.filter(pk=old.pk).update(completed_at=now - timedelta(days=3))
    rows = get(client, staff)["attention"]
    assert [row["job"] for row in rows] == [str(failed)]
    assert rows[0]["error"] == "The PACS refused the move (0xA801)." and rows[0]["status"] == "partial"


def test_free_space_is_reported_per_data_folder(client, staff, settings):
    settings.MIN_FREE_GB = 1
    rows = {row["folder"]: row for row in get(client, staff)["disk"]}
    assert set(rows) == {"downloads", "staging", "uploads", "photos", "imports"}
    usage = shutil.disk_usage(settings.DATA_DIR)
    assert abs(rows["downloads"]["free_bytes"] - usage.free) < 200 * 1024 * 1024
    assert rows["downloads"]["required_bytes"] == 1_000_000_000


def test_health_shows_each_supervised_part_with_its_restarts(client, staff):
    state = {"supervisor": os.getpid(), "parts": {
        "workers": {"up": True, "restarts": 0, "problem": ""},
        "receiver": {"up": False, "restarts": 4, "problem": "exited with 1; restarting in 8 s"},
        "inbox-watcher": {"up": True, "restarts": 0, "problem": ""}}}
    status_path().write_text(json.dumps(state))
    try:
        parts = {part["name"]: part for part in get(client, staff)["health"]}
    finally:
        status_path().unlink()
    assert parts["web"]["state"] == "up" and parts["workers"]["state"] == "up"
    assert parts["receiver"]["state"] == "down" and parts["receiver"]["restarts"] == 4
    assert "restarting" in parts["receiver"]["problem"]


def test_no_patient_identifier_is_in_the_answer(client, staff):
    retrieval(staff, status="partial", error="failed")
    retrieval(staff)
    assert PATIENT not in get(client, staff).__repr__()


def test_the_figures_are_for_staff_only(client, django_user_model):
    assert client.get(URL).status_code == 302, "anonymous: to the login page"
    client.force_login(django_user_model.objects.create_user("plain", password="pw"))
    assert client.get(URL).status_code == 302, "an account that is not staff does not enter the admin"
