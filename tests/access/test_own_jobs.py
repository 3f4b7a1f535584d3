"""Two users' jobs: each lists, sees, cancels, retries and downloads the report of only their own; the
other's job is a 404 in the API, the progress endpoint and the admin, unless one holds "view all jobs"."""
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.servers.intake import create_echo_job
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def retrieval_of(user, server) -> RetrievalJob:
    job = RetrievalJob.objects.create(created_by=user, source_name=f"{user.username}.csv")
    RetrievalItem.objects.create(job=job, line=2, patient_id=f"PID-{user.username}", study_date="20240101",
                                 dicom_server=server, server_name=server.name, status="failed", error="down")
    return job


@pytest.fixture
def server(db):
    return DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=1)


@pytest.fixture
def other(db, django_user_model):
    """A second technologist with the same permissions as `user`."""
    colleague = django_user_model.objects.create_user("colleague")
    colleague.user_permissions.set(Permission.objects.exclude(codename="view_all_jobs"))
    return colleague


def test_each_user_sees_only_their_own_jobs_in_the_api(api, user, other, server):
    mine, theirs = retrieval_of(user, server), retrieval_of(other, server)
    listed = api.get("/api/retrievals/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [job["id"] for job in rows] == [mine.pk]
    assert api.get(f"/api/retrievals/{mine.pk}/").status_code == 200
    for url in (f"/api/retrievals/{theirs.pk}/", f"/api/retrievals/{theirs.pk}/report",
                f"/api/retrievals/{theirs.pk}/report?output=csv",
                f"/api/jobs/retrieval/retrievaljob/{theirs.pk}/progress"):
        response = api.get(url)
        assert response.status_code == 404, url
        assert b"PID-colleague" not in response.content
    for action in ("cancel", "retry"):
        assert api.post(f"/api/retrievals/{theirs.pk}/{action}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.items.get().status == "failed" and not theirs.cancel_requested  # untouched
    assert api.post(f"/api/retrievals/{mine.pk}/retry/").json()["progress"]["pending"] == 1


def test_view_all_jobs_shows_and_lets_cancel_every_users_jobs(user, other, server):
    mine, theirs = retrieval_of(user, server), retrieval_of(other, server)
    user.user_permissions.add(Permission.objects.get(codename="view_all_jobs"))
    api = token_client(user)
    rows = api.get("/api/retrievals/").json()
    assert {job["id"] for job in (rows["results"] if isinstance(rows, dict) else rows)} == {mine.pk, theirs.pk}
    assert api.get(f"/api/retrievals/{theirs.pk}/report").status_code == 200
    assert api.post(f"/api/retrievals/{theirs.pk}/cancel/").status_code == 200
    theirs.refresh_from_db()
    assert theirs.cancel_requested


def test_echo_jobs_follow_the_same_rule(api, user, other, server):
    theirs = create_echo_job([server], user=other)
    assert api.get("/api/echo-jobs/").json() == []
    assert api.get(f"/api/echo-jobs/{theirs.pk}/").status_code == 404
    assert api.get(f"/api/jobs/servers/echojob/{theirs.pk}/progress").status_code == 404


def test_the_admin_lists_and_opens_only_own_jobs(client, django_user_model, user, server):
    staff = django_user_model.objects.create_user("ward-staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_retrievaljob", "change_retrievaljob"]))
    mine, theirs = retrieval_of(staff, server), retrieval_of(user, server)
    client.force_login(staff)
    listing = client.get("/admin/retrieval/retrievaljob/").content.decode()
    assert f"/admin/retrieval/retrievaljob/{mine.pk}/change/" in listing
    assert f"/admin/retrieval/retrievaljob/{theirs.pk}/change/" not in listing
    assert client.get(f"/admin/retrieval/retrievaljob/{mine.pk}/change/").status_code == 200
    # Another account's job is a 404, as in the API (not Django's "doesn't exist" redirect).
    other_page = client.get(f"/admin/retrieval/retrievaljob/{theirs.pk}/change/")
    assert other_page.status_code == 404 and "PID-tech" not in other_page.content.decode()
    assert client.get(f"/admin/retrieval/retrievaljob/{theirs.pk}/report.csv").status_code == 404
    report = client.get(f"/admin/retrieval/retrievaljob/{mine.pk}/report.csv")
    assert report.status_code == 200 and "PID-ward-staff" in report.content.decode()
    # The bulk actions act on the rows the user can see, never on a job id slipped into the form.
    client.post("/admin/retrieval/retrievaljob/", {"action": "cancel_jobs", "_selected_action": [theirs.pk]})
    theirs.refresh_from_db()
    assert not theirs.cancel_requested


def test_item_inline_follows_the_jobs_view_permission(client, django_user_model, server):
    """Seeing a job shows its items: no separate item permission to forget in a group."""
    staff = django_user_model.objects.create_user("viewer", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename="view_retrievaljob"))
    job = retrieval_of(staff, server)
    client.force_login(staff)
    page = client.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/").content.decode()
    assert "PID-viewer" in page and "down" in page
