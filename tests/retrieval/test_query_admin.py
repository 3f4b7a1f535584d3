"""The admin's side of query jobs: the preview's "Query only" button, the found studies on the job page,
"Retrieve these" for the ticked studies, and the results and case-list downloads."""
import base64
import io
import re

import pytest

from apps.retrieval.models import FoundStudy, RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(db):
    return DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)


@pytest.fixture
def found_job(admin_client_logged_in, server):
    job = RetrievalJob.objects.create(created_by=admin_client_logged_in.user, mode="query", source_name="q.csv")
    item = RetrievalItem.objects.create(job=job, line=2, patient_id="P1", study_date="20250101", dicom_server=server,
                                        server_name="LK", status="succeeded")
    RetrievalItem.objects.create(job=job, line=3, patient_id="P2", study_date="20250101", dicom_server=server,
                                 server_name="LK", status="succeeded", flag="no study on LK matches line 3")
    for uid, description in (("1.2.3.1", "CT head"), ("1.2.3.2", "CT chest")):
        FoundStudy.objects.create(item=item, line=2, server_name="LK", study_instance_uid=uid, study_date="20250101",
                                  description=description, modalities="CT", series=1, instances=5)
    return job


def text_of(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def test_the_preview_starts_a_query_job_with_its_own_button(admin_client_logged_in, server):
    client = admin_client_logged_in
    preview = client.post("/admin/retrieval/retrievaljob/upload/", {"files": [_file("a.csv", "P1,2025-01-01,CT,LK\n")]})
    assert 'name="query_only"' in preview.content.decode() and 'name="confirm"' in preview.content.decode()
    start = client.post("/admin/retrieval/retrievaljob/upload/", {
        "query_only": "1", "timeout": "", "default_server": "", "name": ["a.csv"],
        "content": [base64.b64encode(b"P1,2025-01-01,CT,LK\n").decode()]})
    assert start.status_code == 302
    job = RetrievalJob.objects.get()
    assert (job.mode, job.items.count()) == ("query", 1)


def test_the_job_page_shows_the_found_studies_and_flags(admin_client_logged_in, found_job):
    page = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{found_job.pk}/change/")
    text = text_of(page)
    assert "Studies found (2)" in text and "1.2.3.1" in text and "CT chest" in text
    assert "no study on LK matches line 3" in text
    assert 'id="retrieve-found-form"' in page.content.decode()
    results = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{found_job.pk}/results.csv")
    assert results.status_code == 200 and "1.2.3.2" in results.content.decode()
    assert admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{found_job.pk}/results.exe").status_code == 404
    caselist = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{found_job.pk}/caselist.csv")
    assert caselist.content.decode().splitlines()[-1] == "P2,20250101,,LK,,,"


def test_retrieve_these_in_the_admin_starts_a_job_of_the_ticked_study(admin_client_logged_in, found_job):
    response = admin_client_logged_in.post(f"/admin/retrieval/retrievaljob/{found_job.pk}/retrieve-found/",
                                           {"study": ["1.2.3.2"], "ticked": "1"})
    assert response.status_code == 302
    job = RetrievalJob.objects.exclude(pk=found_job.pk).get()
    assert [(i.server_name, i.study_instance_uid) for i in job.items.all()] == [("LK", "1.2.3.2")]
    assert response["Location"].endswith(f"/{job.pk}/change/")


def test_retrieve_these_with_nothing_ticked_says_so(admin_client_logged_in, found_job):
    response = admin_client_logged_in.post(f"/admin/retrieval/retrievaljob/{found_job.pk}/retrieve-found/",
                                           {"ticked": "1"}, follow=True)
    assert "found no study to retrieve" in text_of(response)
    assert RetrievalJob.objects.count() == 1


def _file(name, text):
    f = io.BytesIO(text.encode())
    f.name = name
    return f
