"""Admin pages of retrieval: upload preview (nothing runs before confirming), single query, CSV report."""
import base64
import io
import re

import pytest

from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def servers(db):
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)


def csv_file(name, text):
    f = io.BytesIO(text.encode())
    f.name = name
    return f


def test_upload_previews_every_row_then_starts_only_on_confirm(admin_client_logged_in):
    client = admin_client_logged_in
    preview = client.post("/admin/retrieval/retrievaljob/upload/", {
        "files": [csv_file("a.csv", "P1,2025-01-01,CT,LK\nP2,2025-02-30,CT,LK\n"),
                  csv_file("b.csv", "P3,2025-01-03,MR,XX\n")]})
    page = " ".join(re.sub(r"<[^>]+>", " ", preview.content.decode()).split())  # the text a user reads
    assert "1 row will run, 1 bad row will be skipped" in page
    assert "StudyDate &#x27;2025-02-30&#x27; is not a real date" in page
    assert "unknown server &#x27;XX&#x27; (known: LK)" in page
    assert not RetrievalJob.objects.exists(), "nothing runs before the user confirms"

    start = client.post("/admin/retrieval/retrievaljob/upload/", {
        "confirm": "1", "timeout": "90", "default_server": "",
        "name": ["a.csv", "b.csv"],
        "content": [_b64("P1,2025-01-01,CT,LK\nP2,2025-02-30,CT,LK\n"), _b64("P3,2025-01-03,MR,XX\n")]})
    assert start.status_code == 302
    job = RetrievalJob.objects.get()  # b.csv had no runnable row: no job for it
    assert (job.source_name, job.timeout, job.items.count(), len(job.row_errors)) == ("a.csv", 90, 1, 1)


def test_the_single_query_form_starts_a_one_row_job(admin_client_logged_in):
    response = admin_client_logged_in.post("/admin/retrieval/retrievaljob/query/", {
        "patient_id": "00042", "study_date": "2025-01-01", "modality": "ct", "server": "LK"})
    job = RetrievalJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{job.pk}/change/")
    item = job.items.get()
    assert (item.patient_id, item.study_date, item.modality, item.server_name) == ("00042", "20250101", "CT", "LK")


def test_the_single_query_form_names_a_bad_date(admin_client_logged_in):
    response = admin_client_logged_in.post("/admin/retrieval/retrievaljob/query/", {
        "patient_id": "P", "study_date": "2025-13-01", "server": "LK"})
    assert "is not a real date" in response.content.decode()
    assert not RetrievalJob.objects.exists()


def test_the_report_downloads_as_csv(admin_client_logged_in):
    job = RetrievalJob.objects.create(source_name="x.csv", row_errors=[{"line": 2, "text": "bad", "message": "why"}])
    response = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/report.csv")
    assert response["Content-Disposition"] == f'attachment; filename="failed_downloads_job{job.pk}.csv"'
    assert "bad_rows,2,,,,,,,,,why,bad" in response.content.decode()


def _b64(text):
    import base64

    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("fields, words", [
    ({"timeout": "abc"}, "Enter a whole number"),
    ({"timeout": "-5"}, "greater than or equal to 1"),
    ({"content": ["not base64 at all!"]}, "came back damaged"),
    ({"name": ["a.csv", "b.csv"]}, "came back damaged"),
    ({"content": [base64.b64encode("Müller,2025-01-01,CT,LK\n".encode("latin-1")).decode()]}, "not UTF-8"),
])
def test_a_tampered_confirm_step_is_a_clear_message_never_a_500(admin_client_logged_in, fields, words):
    post = {"confirm": "1", "timeout": "", "default_server": "", "name": ["a.csv"],
            "content": [_b64("P1,2025-01-01,CT,LK\n")], **fields}
    response = admin_client_logged_in.post("/admin/retrieval/retrievaljob/upload/", post, follow=True)
    assert response.status_code == 200
    assert words in response.content.decode()
    assert not RetrievalJob.objects.exists()


def test_the_upload_preview_names_a_wildcard_row(admin_client_logged_in):
    preview = admin_client_logged_in.post("/admin/retrieval/retrievaljob/upload/", {
        "files": [csv_file("w.csv", "P1,2025-01-01,CT,LK\n000*,2025-01-01,CT,LK\n")]})
    page = preview.content.decode()
    assert "1 row will run, 1 bad row will be skipped" in " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "<code>000*,2025-01-01,CT,LK</code>" in page and "contains &#x27;*&#x27;" in page


def test_the_preview_of_a_long_list_shows_its_first_rows_and_says_how_many_run(admin_client_logged_in):
    text = "".join(f"P{n:04d},2025-01-01,CT,LK\n" for n in range(1, 1201))
    page = admin_client_logged_in.post("/admin/retrieval/retrievaljob/upload/",
                                       {"files": [csv_file("long.csv", text)]}).content.decode()
    assert "1200 rows will run" in " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "P0500" in page and "P0501" not in page
    assert "The first 500 rows are shown; all 1200 will run." in page
