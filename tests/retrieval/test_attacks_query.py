"""Attacks on query jobs from another account: over the API with its own token, and through the admin with
its own session. Another account's query job, its found studies and its failed rows are not there (404);
"retrieve these" on it starts nothing; a UID the query never found cannot be smuggled into a retrieval."""
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.retrieval.models import FoundStudy, RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def victims_job(django_user_model):
    victim = django_user_model.objects.create_user(username="victim", password="victim-pass-123")
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    job = RetrievalJob.objects.create(created_by=victim, mode="query", source_name="secret.csv")
    item = RetrievalItem.objects.create(job=job, line=2, patient_id="SECRET01", study_date="20250101",
                                        dicom_server=server, server_name="LK", status="failed", error="boom")
    FoundStudy.objects.create(item=item, line=2, server_name="LK", study_instance_uid="1.2.826.7",
                              description="VICTIM STUDY")
    return job


@pytest.fixture
def attacker(django_user_model):
    """Every retrieval permission (not "view all jobs"), staff for the admin."""
    user = django_user_model.objects.create_user(username="attacker", password="attacker-pass-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="retrieval"))
    return user


def test_another_accounts_query_job_is_not_there_over_the_api(victims_job, attacker):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=attacker).key}")
    for url in (f"/api/retrievals/{victims_job.pk}/results", f"/api/retrievals/{victims_job.pk}/results?output=xlsx",
                f"/api/retrievals/{victims_job.pk}/report?output=caselist"):
        response = client.get(url)
        assert response.status_code == 404 and b"SECRET01" not in response.content
        assert b"1.2.826.7" not in response.content
    response = client.post(f"/api/retrievals/{victims_job.pk}/retrieve", {"studies": ["1.2.826.7"]}, format="json")
    assert response.status_code == 404
    assert RetrievalJob.objects.count() == 1


def test_another_accounts_query_job_is_not_there_in_the_admin(victims_job, attacker, client):
    client.force_login(attacker)
    base = f"/admin/retrieval/retrievaljob/{victims_job.pk}"
    for url in (f"{base}/results.csv", f"{base}/results.xlsx", f"{base}/caselist.csv"):
        response = client.get(url)
        assert response.status_code == 404 and b"SECRET01" not in response.content
    response = client.post(f"{base}/retrieve-found/", {"study": ["1.2.826.7"], "ticked": "1"})
    assert response.status_code == 404
    assert RetrievalJob.objects.count() == 1


def test_a_uid_the_query_did_not_find_is_not_smuggled_into_a_retrieval(victims_job, client):
    # even the job's owner cannot turn "retrieve these" into a retrieval of anything else
    owner = victims_job.created_by
    owner.user_permissions.set(Permission.objects.filter(content_type__app_label="retrieval"))
    owner.is_staff = True
    owner.save()
    client.force_login(owner)
    response = client.post(f"/admin/retrieval/retrievaljob/{victims_job.pk}/retrieve-found/",
                           {"study": ["1.2.826.7", "1.2.826.666"], "ticked": "1"}, follow=True)
    assert "StudyInstanceUID 1.2.826.666 was not found by query job" in response.content.decode()
    assert RetrievalJob.objects.count() == 1
