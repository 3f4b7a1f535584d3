"""A project's query job against a real Orthanc: its results (API JSON, CSV, Excel; the admin's table and
downloads) name the study as the project's files will (the project's StudyInstanceUID, the shifted date,
no accession number, the description removed or cut of the patient's identifiers), and "retrieve these"
by the project's UID still fetches the original study from the PACS, whose originals never leave the
server. A query without a project shows what the PACS answered."""
from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from openpyxl import load_workbook

from apps.jobs import runner
from apps.projects.models import Project
from apps.retrieval.models import RetrievalJob
from tests.projects.planted import PATIENT_ID, STUDY_UID, as_file, planted_dataset, read, shift_safe

pytestmark = pytest.mark.django_db(transaction=True)
ORIGINALS = (STUDY_UID, "PLANTACC99", PATIENT_ID, "20200301", "2020-03-01", "Plantcomment")


@pytest.fixture
def pacs_study(empty_orthanc):
    for n in range(2):
        ds = planted_dataset("ISO_IR 192", sop_uid=f"1.2.826.0.1.3680043.8.498.7740{n}")
        ds.StudyDescription = f"CT Thorax {PATIENT_ID} PLANTACC99"
        empty_orthanc.rest("POST", "/instances", content=as_file(ds))
    return empty_orthanc


def query(api, project: str | None) -> RetrievalJob:
    body = {"rows": [{"PatientID": PATIENT_ID, "StudyDate": "2020-01-01..2020-12-31", "Server": "A"}], "mode": "query"}
    answer = api.post("/api/retrievals/", {**body, **({"project": project} if project else {})}, format="json")
    assert answer.status_code == 201, answer.content
    job = runner.run_inline(RetrievalJob.objects.get(pk=answer.json()["id"]))
    assert job.status == "succeeded", job.status
    return job


def xlsx_text(data: bytes) -> str:
    assert zipfile.is_zipfile(io.BytesIO(data))
    sheet = load_workbook(io.BytesIO(data)).active
    return " ".join(str(cell) for row in sheet.iter_rows(values_only=True) for cell in row if cell is not None)


def every_result(api, job) -> str:
    return (api.get(f"/api/retrievals/{job.pk}/results").content.decode()
            + api.get(f"/api/retrievals/{job.pk}/results?output=csv").content.decode()
            + xlsx_text(api.get(f"/api/retrievals/{job.pk}/results?output=xlsx").content)
            + api.get(f"/api/retrievals/{job.pk}/").content.decode())


def test_a_projects_query_results_show_the_projects_values_only(portal, pacs_study, researcher,
                                                               admin_client_logged_in):
    project = shift_safe(Project.objects.create(
        name="TRIAL1", options=["retain-longitudinal-dates", "clean-descriptors"]))
    job = query(researcher, "TRIAL1")
    (row,) = researcher.get(f"/api/retrievals/{job.pk}/results").json()["results"]
    patient = project.patient(PATIENT_ID)
    shifted = (dt.date(2020, 3, 1) + dt.timedelta(days=patient.date_shift_days)).strftime("%Y%m%d")
    assert row["StudyInstanceUID"] == project.recipe().uid(STUDY_UID)
    assert (row["StudyDate"], row["AccessionNumber"], row["StudyDescription"]) == (shifted, "", "CT Thorax")
    assert row["NumberOfStudyRelatedInstances"] == 2 and row["ModalitiesInStudy"] == "CT"
    shown = every_result(researcher, job)
    shown += admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/").content.decode()
    shown += admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/results.csv").content.decode()
    shown += xlsx_text(admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/results.xlsx").content)
    assert [o for o in ORIGINALS if o in shown] == []
    assert project.recipe().uid(STUDY_UID) in shown and shifted in shown


def test_without_clean_descriptors_the_description_is_not_shown(portal, pacs_study, researcher):
    Project.objects.create(name="TRIAL1")
    job = query(researcher, "TRIAL1")
    (row,) = researcher.get(f"/api/retrievals/{job.pk}/results").json()["results"]
    assert (row["StudyDescription"], row["StudyDate"], row["AccessionNumber"]) == ("", "(date not shown)", "")
    assert [o for o in ORIGINALS + ("CT Thorax",) if o in every_result(researcher, job)] == []


def test_a_query_without_a_project_shows_what_the_pacs_answered(portal, pacs_study, user):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user)
    job = query(api, None)
    (row,) = api.get(f"/api/retrievals/{job.pk}/results").json()["results"]
    assert (row["StudyInstanceUID"], row["AccessionNumber"], row["StudyDate"]) == (STUDY_UID, "PLANTACC99", "20200301")


def test_retrieve_these_by_the_projects_uid_fetches_the_original_study(portal, pacs_study, researcher, settings):
    project = Project.objects.create(name="TRIAL1")
    job = query(researcher, "TRIAL1")
    new_uid = project.recipe().uid(STUDY_UID)
    refused = researcher.post(f"/api/retrievals/{job.pk}/retrieve", {"studies": [STUDY_UID]}, format="json")
    assert refused.status_code == 400 and "was not found by query job" in refused.json()["error"]
    answer = researcher.post(f"/api/retrievals/{job.pk}/retrieve", {"studies": [new_uid]}, format="json")
    assert answer.status_code == 201, answer.content
    assert STUDY_UID not in answer.content.decode() and new_uid in answer.content.decode()
    started = RetrievalJob.objects.get(pk=answer.json()["id"])
    assert started.project == project and started.query_job == job
    (item,) = started.items.all()
    assert item.study_instance_uid == STUDY_UID, "the original stays on the server, where the C-MOVE needs it"
    started = runner.run_inline(started)
    assert started.status == "succeeded", started.status
    filed = sorted(settings.DOWNLOADS_DIR.rglob("*.dcm"))
    assert len(filed) == 2
    assert {read(p.read_bytes()).StudyInstanceUID for p in filed} == {new_uid}
    assert {read(p.read_bytes()).PatientID for p in filed} == {project.patient(PATIENT_ID).pseudonym}


def test_the_admins_retrieve_these_takes_the_ticked_projects_uid(portal, pacs_study, admin_client_logged_in):
    project = Project.objects.create(name="TRIAL1")
    job = query(admin_client_logged_in_api(admin_client_logged_in), "TRIAL1")
    page = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/").content.decode()
    new_uid = project.recipe().uid(STUDY_UID)
    assert f'value="{new_uid}"' in page and STUDY_UID not in page
    admin_client_logged_in.post(f"/admin/retrieval/retrievaljob/{job.pk}/retrieve-found/",
                                {"study": [new_uid], "ticked": "1"})
    started = RetrievalJob.objects.get(query_job=job)
    assert [i.study_instance_uid for i in started.items.all()] == [STUDY_UID]


def admin_client_logged_in_api(client):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(client.user)
    return api


def test_the_failed_rows_of_a_projects_follow_up_name_no_original(portal, pacs_study, researcher):
    project = Project.objects.create(name="TRIAL1")
    job = query(researcher, "TRIAL1")
    new_uid = project.recipe().uid(STUDY_UID)
    answer = researcher.post(f"/api/retrievals/{job.pk}/retrieve", {"studies": [new_uid]}, format="json")
    started = RetrievalJob.objects.get(pk=answer.json()["id"])
    item = started.items.get()
    # as a row the PACS failed would say it (its error names the study it asked for)
    item.status, item.error = "failed", f"study {STUDY_UID}: the PACS refused the move (A801)"
    item.save()
    text = researcher.get(f"/api/retrievals/{started.pk}/report?output=caselist").content.decode()
    assert STUDY_UID not in text and new_uid in text and "A801" in text
    assert "research project TRIAL1" in text
