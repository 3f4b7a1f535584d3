"""A project's retrieval job shows no original: its items, bad rows, errors, results and report (JSON, CSV)
name the pseudonym, the project's UIDs and shifted dates in place of the PatientID, StudyInstanceUIDs and
dates the case list gave or the PACS answered; the job without a project shows them as before."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.projects.models import Project
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db
ORIGINAL_ID = "PLANT-ID-4711"
ORIGINAL_UID = "1.2.826.0.1.3680043.8.498.77001"
PACS_UID = "1.2.826.0.1.3680043.8.498.99123"


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    return client


def start(api, project=None):
    rows = [{"PatientID": ORIGINAL_ID, "StudyDate": "2020-03-01", "Modality": "CT", "Server": "LK"},
            {"StudyInstanceUID": ORIGINAL_UID, "Server": "LK"},
            {"PatientID": ORIGINAL_ID, "StudyDate": "2020-02-30", "Server": "LK"}]  # a bad row
    answer = api.post("/api/retrievals/", {"rows": rows, **({"project": project} if project else {})},
                      format="json")
    assert answer.status_code == 201, answer.content
    job = RetrievalJob.objects.get(pk=answer.json()["id"])
    first, second = job.items.order_by("line")
    # as a failed row and a finished one would say it
    first.error = (f"Line 2, LK: study {PACS_UID}: received 1 of 2 instances; "
                   f"No study on LK matches line 2 (PatientID {ORIGINAL_ID}, 20200301, CT).")
    first.result = {"studies": [{"uid": PACS_UID, "folder": "/x"}]}
    first.save()
    second.error = f"No study on LK matches line 3 (StudyInstanceUID {ORIGINAL_UID})."
    second.save()
    return job


def everything(api, job) -> bytes:
    return b"".join(api.get(url).content for url in (
        f"/api/retrievals/{job.pk}/", "/api/retrievals/", f"/api/retrievals/{job.pk}/report",
        f"/api/retrievals/{job.pk}/report?output=csv"))


def test_a_projects_retrieval_names_no_original(api):
    project = Project.objects.create(name="TRIAL1", options=["retain-longitudinal-dates"])
    job = start(api, "TRIAL1")
    shown = everything(api, job)
    for original in (ORIGINAL_ID, ORIGINAL_UID, PACS_UID, "20200301", "2020-03-01", "2020-02-30"):
        assert original.encode() not in shown, original
    patient = project.patient(ORIGINAL_ID)
    assert patient.pseudonym.encode() in shown
    recipe = project.recipe()
    assert recipe.uid(PACS_UID).encode() in shown and recipe.uid(ORIGINAL_UID).encode() in shown
    items = api.get(f"/api/retrievals/{job.pk}/").json()["items"]
    import datetime as dt
    shifted = (dt.date(2020, 3, 1) + dt.timedelta(days=patient.date_shift_days)).strftime("%Y%m%d")
    assert items[0]["PatientID"] == patient.pseudonym and items[0]["StudyDate"] == shifted
    assert items[1]["StudyInstanceUID"] == recipe.uid(ORIGINAL_UID)


def test_without_the_dates_option_no_date_is_shown(api):
    Project.objects.create(name="TRIAL2")
    shown = everything(api, start(api, "TRIAL2"))
    assert b"20200301" not in shown and b"(date not shown)" in shown


def test_a_job_without_a_project_shows_the_rows_as_given(api):
    shown = everything(api, start(api))
    assert ORIGINAL_ID.encode() in shown and ORIGINAL_UID.encode() in shown and PACS_UID.encode() in shown


def test_the_admin_job_page_names_no_original(api, admin_client_logged_in):
    project = Project.objects.create(name="TRIAL1", options=["retain-longitudinal-dates"])
    job = start(api, "TRIAL1")
    page = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/").content
    for original in (ORIGINAL_ID, ORIGINAL_UID, PACS_UID, "20200301", "2020-02-30"):
        assert original.encode() not in page, original
    assert project.patient(ORIGINAL_ID).pseudonym.encode() in page
    assert ORIGINAL_ID.encode() not in admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/report.csv").content
