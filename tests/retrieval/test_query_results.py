"""A query job's results (GET …/results as JSON, CSV, Excel), "retrieve these" (POST …/retrieve: exactly
the studies ticked, as a new job of the caller's) and "fix and retry" (GET …/report?output=caselist: the
failed and flagged rows as a case list that uploads again to the same rows). Against the real Orthanc."""
import csv
import io
from pathlib import Path

import openpyxl
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.delivery.models import DeliveryTarget
from apps.jobs import runner
from apps.retrieval.caselist import parse_case_list
from apps.retrieval.models import FoundStudy, RetrievalItem, RetrievalJob
from apps.retrieval.results import FIELDS
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders

pytestmark = pytest.mark.django_db(transaction=True)


def day(study) -> str:
    return f"{study['StudyDate'][:4]}-{study['StudyDate'][4:6]}-{study['StudyDate'][6:]}"


@pytest.fixture
def query_job(api, orthanc_servers, orthanc_dataset, settings, tmp_path):
    """A query job over the API on server B (C-GET): ORT00001's two studies (line 2), nothing (line 3), one
    study of ORT00002 (line 4), run here."""
    own_data_folders(settings, tmp_path)
    studies = orthanc_dataset["studies"]
    rows = [{"PatientID": "ORT00001", "StudyDate": "2021-03-01..2021-03-31", "Server": "B"},
            {"PatientID": "NOBODY", "StudyDate": "2021-03-01", "Server": "B"},
            {"PatientID": "ORT00002", "StudyDate": day(studies[2]), "Modality": studies[2]["Modality"],
             "Server": "B", "MaxStudies": 1}]
    response = api.post("/api/retrievals/", {"rows": rows, "mode": "query"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["mode"] == "query"
    return runner.run_inline(RetrievalJob.objects.get(pk=response.json()["id"]))


def test_results_as_json_csv_and_xlsx_one_line_per_study_found(api, query_job, orthanc_dataset):
    studies = orthanc_dataset["studies"]
    body = api.get(f"/api/retrievals/{query_job.pk}/results").json()
    expected = [(2, "B", s["StudyInstanceUID"], s["StudyDate"], s["Modality"], s["AccessionNumber"], 1, 5)
                for s in studies[:2]] + [(4, "B", studies[2]["StudyInstanceUID"], studies[2]["StudyDate"],
                                          studies[2]["Modality"], studies[2]["AccessionNumber"], 1, 5)]
    assert [(r["line"], r["Server"], r["StudyInstanceUID"], r["StudyDate"], r["ModalitiesInStudy"],
             r["AccessionNumber"], r["NumberOfStudyRelatedSeries"], r["NumberOfStudyRelatedInstances"])
            for r in body["results"]] == expected
    assert all(r["StudyTime"] and r["StudyDescription"] for r in body["results"])

    response = api.get(f"/api/retrievals/{query_job.pk}/results?output=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == FIELDS
    assert [(int(r["line"]), r["StudyInstanceUID"]) for r in rows] == [(e[0], e[2]) for e in expected]

    response = api.get(f"/api/retrievals/{query_job.pk}/results?output=xlsx")
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True).worksheets[0]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert tuple(cells[0]) == FIELDS
    assert [(r[0], r[2]) for r in cells[1:]] == [(e[0], e[2]) for e in expected]

    bad = api.get(f"/api/retrievals/{query_job.pk}/results?output=pdf")
    assert bad.status_code == 400 and "output 'pdf'" in bad.json()["error"]
    items = {i["line"]: i for i in api.get(f"/api/retrievals/{query_job.pk}/").json()["items"]}
    assert (items[2]["found"], items[3]["found"], items[4]["found"]) == (2, 0, 1)
    assert items[3]["flag"] and not items[2]["flag"] and items[4]["MaxStudies"] == 1


def test_a_pacs_text_reaches_the_spreadsheets_as_text_never_as_a_formula(api, user):
    job = RetrievalJob.objects.create(created_by=user, mode="query")
    server = DicomServer.objects.create(name="Q", ae_title="Q", host="127.0.0.1", port=104)
    item = RetrievalItem.objects.create(job=job, line=2, patient_id="P", study_date="20240101", dicom_server=server,
                                        server_name="Q")
    FoundStudy.objects.create(item=item, line=2, server_name="Q", study_instance_uid="1.2.3",
                              description='=HYPERLINK("http://x")', accession_number="+1")
    text = api.get(f"/api/retrievals/{job.pk}/results?output=csv").content.decode()
    assert "'=HYPERLINK" in text and ",'+1," in text
    sheet = openpyxl.load_workbook(io.BytesIO(api.get(f"/api/retrievals/{job.pk}/results?output=xlsx").content))
    row = [cell for cell in sheet.worksheets[0][2]]
    assert row[6].value == "'=HYPERLINK(\"http://x\")" and row[6].data_type == "s"


def test_retrieve_these_fetches_exactly_the_ticked_study_as_a_new_job_of_the_caller(
        api, query_job, orthanc, orthanc_dataset, settings, user):
    ticked = orthanc_dataset["studies"][1]
    response = api.post(f"/api/retrievals/{query_job.pk}/retrieve", {"studies": [ticked["StudyInstanceUID"]]},
                        format="json")
    assert response.status_code == 201, response.content
    job = RetrievalJob.objects.get(pk=response.json()["id"])
    assert (job.mode, job.created_by, job.query_job_id) == ("retrieve", user, query_job.pk)
    assert [(i.server_name, i.study_instance_uid) for i in job.items.all()] == [("B", ticked["StudyInstanceUID"])]
    job = runner.run_inline(job)
    assert job.status == "succeeded", [i.error for i in job.items.all()]
    files = {p.stem for p in Path(settings.DOWNLOADS_DIR).rglob("*.dcm")}
    assert files == orthanc.study_instances(ticked["StudyInstanceUID"])


def test_retrieve_these_without_a_list_takes_every_study_found_once(api, query_job, orthanc_dataset):
    response = api.post(f"/api/retrievals/{query_job.pk}/retrieve", format="json")
    assert response.status_code == 201, response.content
    uids = [i["StudyInstanceUID"] for i in response.json()["items"]]
    assert uids == [s["StudyInstanceUID"] for s in orthanc_dataset["studies"][:3]]


@pytest.mark.parametrize("body,words", [
    ({"studies": ["1.2.999"]}, "StudyInstanceUID 1.2.999 was not found by query job"),
    ({"studies": []}, "studies"),
    (["1.2.3"], "Send an object"),
])
def test_retrieve_these_refuses_what_the_query_did_not_find(api, query_job, body, words):
    response = api.post(f"/api/retrievals/{query_job.pk}/retrieve", body, format="json")
    assert response.status_code == 400 and words in response.content.decode()
    assert RetrievalJob.objects.count() == 1


def test_retrieve_these_of_a_retrieval_job_is_refused(api, user):
    job = RetrievalJob.objects.create(created_by=user)
    response = api.post(f"/api/retrievals/{job.pk}/retrieve", format="json")
    assert response.status_code == 400 and "not a query job" in response.json()["error"]


def test_caselist_of_failed_and_flagged_rows_uploads_again_to_the_same_rows(api, query_job):
    response = api.get(f"/api/retrievals/{query_job.pk}/report?output=caselist")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    parsed = parse_case_list(text, {"A", "B"})
    flagged = query_job.items.exclude(flag="")
    assert not parsed.errors
    assert [(r.line > 0, r.patient_id, r.study_date, r.modality, r.server, r.study_instance_uid, r.max_studies)
            for r in parsed.rows] == [(True, i.patient_id, i.study_date, i.modality, i.server_name,
                                       i.study_instance_uid, i.max_studies) for i in flagged]
    assert "# line 3: no study on B matches line 3" in text
    again = api.post("/api/retrievals/", {"file": _upload("retry.csv", text), "mode": "query"}, format="multipart")
    assert again.status_code == 201, again.content
    assert again.json()["mode"] == "query"
    assert [(i["PatientID"], i["StudyDate"], i["Server"]) for i in again.json()["items"]] == [
        (i.patient_id, i.study_date, i.server_name) for i in flagged]


def test_caselist_of_a_retrieval_job_holds_its_failed_rows(api, orthanc_servers, orthanc_dataset, settings,
                                                           tmp_path):
    own_data_folders(settings, tmp_path)
    s = orthanc_dataset["studies"][0]
    text = (f"PatientID,StudyDate,Modality,Server\n{s['PatientID']},{day(s)},{s['Modality']},B\n"
            "NOBODY,2021-03-01,CT,B\n00042,2021-03-01..2021-03-02,,B\n")
    response = api.post("/api/retrievals/", {"file": _upload("cases.csv", text)}, format="multipart")
    job = runner.run_inline(RetrievalJob.objects.get(pk=response.json()["id"]))
    caselist = api.get(f"/api/retrievals/{job.pk}/report?output=caselist").content.decode()
    rows = parse_case_list(caselist, {"B"}).rows
    assert [(r.patient_id, r.study_date, r.modality, r.server) for r in rows] == [
        ("NOBODY", "20210301", "CT", "B"), ("00042", "20210301-20210302", "", "B")]


def test_another_account_reaches_none_of_it(query_job, django_user_model):
    other = django_user_model.objects.create_user(username="other", password="other-pass-123")
    other.user_permissions.set(Permission.objects.filter(content_type__app_label="retrieval"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other).key}")
    for url in (f"/api/retrievals/{query_job.pk}/results", f"/api/retrievals/{query_job.pk}/results?output=csv",
                f"/api/retrievals/{query_job.pk}/report?output=caselist"):
        assert client.get(url).status_code == 404
    assert client.post(f"/api/retrievals/{query_job.pk}/retrieve", format="json").status_code == 404
    assert RetrievalJob.objects.count() == 1


def test_retrieve_these_needs_the_start_permission(query_job, django_user_model):
    viewer = query_job.created_by
    viewer.user_permissions.remove(Permission.objects.get(codename="start_retrieval"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=viewer)[0].key}")
    response = client.post(f"/api/retrievals/{query_job.pk}/retrieve", format="json")
    assert response.status_code == 403
    assert RetrievalJob.objects.count() == 1


def _upload(name, text):
    f = io.BytesIO(text.encode())
    f.name = name
    return f


def test_a_formula_like_value_survives_the_round_trip_through_the_caselist(api, user):
    server = DicomServer.objects.create(name="Q", ae_title="Q", host="127.0.0.1", port=104)
    job = RetrievalJob.objects.create(created_by=user)
    for line, patient in ((2, "-123"), (3, "=X"), (4, "+1")):
        RetrievalItem.objects.create(job=job, line=line, patient_id=patient, study_date="20240101", dicom_server=server,
                                     server_name="Q", status="failed", error="No study")
    text = api.get(f"/api/retrievals/{job.pk}/report?output=caselist").content.decode()
    assert "'-123," in text and "'=X," in text  # inert where a spreadsheet would open it
    assert [r.patient_id for r in parse_case_list(text, {"Q"}).rows] == ["-123", "=X", "+1"]


def test_a_query_job_takes_no_delivery(api, tmp_path):
    DicomServer.objects.create(name="Q", ae_title="Q", host="127.0.0.1", port=104)
    DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(tmp_path / "out"))
    response = api.post("/api/retrievals/", {"rows": [{"PatientID": "P1", "StudyDate": "2024-01-01", "Server": "Q"}],
                                             "mode": "query", "delivery": {"target": "BOX", "mode": "direct"}},
                        format="json")
    assert response.status_code == 400, response.content
    assert "mode 'query' moves nothing, so nothing can follow it: leave out 'delivery'" in response.json()["error"]
    assert not RetrievalJob.objects.exists()
