"""Attacks on the operations of jobs from other accounts over HTTP: pausing, resuming or raising someone
else's job is a 404 (the job is not there for them) and changes nothing; "urgent": true without the
permission is a 403 naming it, on every job API, and starts nothing; pausing an app needs "pause apps"."""
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.delivery.models import DeliveryJob
from apps.imports.models import ImportJob
from apps.jobs.models import AppPause
from apps.retrieval.models import RetrievalJob
from apps.sending.models import SendJob
from apps.servers.models import EchoJob
from tests.jobs.conftest import make_echo_job, make_server

pytestmark = pytest.mark.django_db

JOB_POSTS = [("/api/echo-jobs/", EchoJob), ("/api/retrievals/", RetrievalJob), ("/api/sends/", SendJob),
             ("/api/imports/", ImportJob), ("/api/deliveries/", DeliveryJob)]


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def stranger(django_user_model):
    """Another technologist: every permission (urgent and pause included) but "view all jobs"."""
    other = django_user_model.objects.create_user(username="stranger", password="x", is_staff=True)
    other.user_permissions.set(Permission.objects.exclude(codename="view_all_jobs"))
    return other


@pytest.fixture
def not_urgent(django_user_model):
    """May start every kind of job, but not urgent ones."""
    clerk = django_user_model.objects.create_user(username="clerk", password="x")
    clerk.user_permissions.set(Permission.objects.exclude(codename__in=["view_all_jobs", "start_urgent_jobs"]))
    return clerk


@pytest.mark.parametrize("url,model", JOB_POSTS, ids=[u for u, _ in JOB_POSTS])
def test_urgent_without_the_permission_is_403_naming_it_and_starts_nothing(url, model, not_urgent):
    make_server("LK", 104)
    for body, fmt in (({"urgent": True}, "json"), ({"urgent": "true"}, "multipart")):
        response = token_client(not_urgent).post(url, body, format=fmt)
        assert response.status_code == 403, (url, response.content)
        detail = response.json()["detail"]
        assert '"start urgent jobs"' in detail and "jobs.start_urgent_jobs" in detail
    assert not model.objects.exists()


def test_urgent_false_needs_no_permission(not_urgent):
    make_server("LK", 104)
    response = token_client(not_urgent).post("/api/echo-jobs/", {"urgent": False}, format="json")
    assert response.status_code == 201 and response.json()["urgent"] is False


def test_another_account_cannot_pause_resume_or_see_my_job(user, stranger):
    job = make_echo_job([make_server("LK", 104)] * 3, user=user)
    job.start()
    client = token_client(stranger)
    for verb in ("pause", "resume"):
        response = client.post(f"/api/echo-jobs/{job.pk}/{verb}/")
        assert response.status_code == 404, response.content
    job.pause(user=user)
    assert client.post(f"/api/echo-jobs/{job.pk}/resume/").status_code == 404
    job.refresh_from_db()
    assert job.paused and job.items.filter(status="pending").exclude(waiting="").count() == 3
    assert client.get(f"/api/jobs/servers/echojob/{job.pk}/progress").status_code == 404


def test_another_account_cannot_pause_or_raise_my_job_in_the_admin(user, stranger):
    job = make_echo_job([make_server("LK", 104)] * 2, user=user)
    job.start()
    admin = Client()
    admin.force_login(stranger)
    for action in ("pause_jobs", "make_urgent", "resume_jobs"):
        admin.post("/admin/servers/echojob/", {"action": action, "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert not job.paused and not job.urgent
    assert job.items.filter(waiting="").count() == 2
    assert admin.get(f"/admin/servers/echojob/{job.pk}/change/").status_code in (302, 404)


def test_pausing_an_app_needs_pause_apps_and_an_unknown_app_is_named(user, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", password="x")
    viewer.user_permissions.set(Permission.objects.filter(codename="view_apppause"))
    response = token_client(viewer).post("/api/jobs/apps/retrieval/pause/")
    assert response.status_code == 403 and "jobs.pause_apps" in response.json()["detail"]
    assert not AppPause.objects.exists()
    assert token_client(viewer).get("/api/jobs/apps/").status_code == 200
    unknown = token_client(user).post("/api/jobs/apps/auth/pause/")
    assert unknown.status_code == 404 and "retrieval" in unknown.json()["detail"]
    assert not AppPause.objects.exists()
