"""POST /api/retrievals/ (files or JSON rows), GET the job and its report; every bad input a clear 400."""
import io

import pytest

from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def servers(db):
    for name in ("LK", "LNK"):
        DicomServer.objects.create(name=name, ae_title=name, host="127.0.0.1", port=104)


def upload(name, text):
    f = io.BytesIO(text if isinstance(text, bytes) else text.encode())
    f.name = name
    return f


def test_a_csv_upload_starts_one_job_with_its_rows_and_bad_rows(api, user, broker,
                                                                django_capture_on_commit_callbacks):
    text = "PatientID,StudyDate,Modality,Server\n8318169,2019-05-20,CT,LK\n00123,2025-09-22,MR,LNK\nX,2025-02-30,CT,LK\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/retrievals/", {"file": upload("cases.csv", text)}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "running" and body["source_name"] == "cases.csv"
    assert [(i["line"], i["PatientID"], i["StudyDate"], i["Server"], i["status"]) for i in body["items"]] == [
        (2, "8318169", "20190520", "LK", "pending"), (3, "00123", "20250922", "LNK", "pending")]
    assert body["row_errors"] == [{"line": 4, "text": "X,2025-02-30,CT,LK",
                                   "message": "StudyDate '2025-02-30' is not a real date in YYYY-MM-DD form"}]
    assert body["progress"]["total"] == 2 and body["progress"]["pending"] == 2
    assert broker.queue_size() == 2, "each row was put on the worker queue"
    job = RetrievalJob.objects.get(pk=body["id"])
    assert job.created_by == user
    assert job.items.count() == 2


def test_several_case_lists_become_one_job_each(api):
    response = api.post("/api/retrievals/", {"file": [upload("a.csv", "P1,2025-01-01,CT,LK\n"),
                                                       upload("b.csv", "P2,2025-01-02,MR,LNK\n")]},
                        format="multipart")
    assert response.status_code == 201
    assert sorted(job["source_name"] for job in response.json()) == ["a.csv", "b.csv"]


def test_json_rows_with_a_timeout_and_a_default_server(api):
    response = api.post("/api/retrievals/", {"rows": [{"PatientID": "P1", "StudyDate": "2025-01-01", "Modality": "CT"},
                                                      {"StudyInstanceUID": "1.2.3.4", "Server": "LNK"}],
                                             "timeout": 300, "server": "LK"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["timeout"] == 300
    assert [(i["Server"], i["StudyInstanceUID"]) for i in body["items"]] == [("LK", ""), ("LNK", "1.2.3.4")]


@pytest.mark.parametrize("payload,fmt,words", [
    ({"file": upload("latin.csv", "Müller,2025-01-01,CT,LK\n".encode("latin-1"))}, "multipart", "not UTF-8"),
    ({"file": upload("bad.csv", "P1,2025-13-01,CT,LK\nP2,2025-01-01,CT,MOON\n")}, "multipart", "no row can be run"),
    ({"rows": []}, "json", "no row can be run"),
    ({}, "json", "either a case-list file"),
    ({"rows": [{"PatientID": "P1"}], "timeout": 0}, "json", "greater than or equal to 1"),
])
def test_bad_requests_get_a_clear_400(api, payload, fmt, words):
    response = api.post("/api/retrievals/", payload, format=fmt)
    assert response.status_code == 400
    assert words in response.content.decode()
    assert not RetrievalJob.objects.exists()


def test_an_oversize_case_list_is_refused(api):
    big = upload("huge.csv", "P1,2025-01-01,CT,LK\n" * 300_000)
    response = api.post("/api/retrievals/", {"file": big}, format="multipart")
    assert response.status_code == 400 and "byte limit" in response.json()["error"]


def test_the_report_lists_bad_rows_and_pending_rows(api):
    job_id = api.post("/api/retrievals/", {"file": upload("c.csv", "P1,2025-01-01,CT,LK\nP2,,CT,LK\n")},
                      format="multipart").json()["id"]
    report = api.get(f"/api/retrievals/{job_id}/report").json()
    assert report["summary"]["rows"] == 2 and report["summary"]["bad_rows"] == 1
    assert report["bad_rows"][0]["line"] == 2 and "StudyDate is empty" in report["bad_rows"][0]["reason"]
    csv_response = api.get(f"/api/retrievals/{job_id}/report", {"output": "csv"})
    assert csv_response["Content-Type"].startswith("text/csv")
    assert "bad_rows,2" in csv_response.content.decode()


def test_a_finished_list_with_bad_rows_is_partial_never_succeeded(api):
    job_id = api.post("/api/retrievals/", {"file": upload("c.csv", "P1,2025-01-01,CT,LK\nP2,,CT,LK\n")},
                      format="multipart").json()["id"]
    job = RetrievalJob.objects.get(pk=job_id)
    job.items.update(status="succeeded")
    assert job.refresh_status() == "partial"
    job.row_errors = []
    job.save()
    assert job.refresh_status() == "succeeded"


def test_unknown_job_is_404(api):
    assert api.get("/api/retrievals/999/").status_code == 404
    assert api.get("/api/retrievals/999/report").status_code == 404


def test_the_admin_job_list_shows_rows_images_and_megabytes(admin_client_logged_in):
    from apps.jobs.admin import counters_text

    job = RetrievalJob.objects.create(source_name="c.csv", row_errors=[{"line": 3, "text": "x", "message": "bad"}])
    for line, status, n in ((1, "succeeded", 12), (2, "failed", 0)):
        job.items.create(line=line, status=status, instances=n, bytes=n * 500_000, patient_id="P",
                         dicom_server=DicomServer.objects.get(name="LK"), server_name="LK")
    job.items.create(line=4, patient_id="P", dicom_server=DicomServer.objects.get(name="LK"), server_name="LK")
    text = counters_text(job.progress())
    assert text == "2/3 done · 1 pending · 1 succeeded · 1 failed · 12 instances · 0 expected instances · 6.0 MB · 1 bad rows"
    page = admin_client_logged_in.get("/admin/retrieval/retrievaljob/").content.decode()
    assert text in page and "failed downloads (CSV)" in page and "Upload case lists" in page
