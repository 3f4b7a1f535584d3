"""Large case lists: the upload answers with a "preparing" job whose rows are created in the background,
a cancel meanwhile leaves the report complete, the job body and the admin page page their items, and
the job list carries none."""
import io

import pytest
from django_q.models import OrmQ

from apps.jobs.models import ItemStatus
from apps.retrieval import intake
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.retrieval.report import build_report
from apps.retrieval.tasks import prepare_job
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db
ROWS = 2500


@pytest.fixture(autouse=True)
def server(db, settings):
    settings.RETRIEVAL_INLINE_ROWS = 100
    return DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104, max_associations=2)


def big_list(rows=ROWS) -> io.BytesIO:
    text = "PatientID,StudyDate,Modality,Server\n" + "".join(f"P{n:05d},2024-01-02,CT,LK\n" for n in range(rows))
    text += "BAD*,2024-01-02,CT,LK\n"
    upload = io.BytesIO(text.encode())
    upload.name = "big.csv"
    return upload


def prepare_tasks() -> list[int]:
    from django_q.signing import SignedPackage

    return [SignedPackage.loads(m.payload)["args"][0] for m in OrmQ.objects.order_by("id")
            if SignedPackage.loads(m.payload)["func"] == "apps.retrieval.tasks.prepare_job"]


def test_a_long_list_answers_preparing_then_its_rows_run(api, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/retrievals/", {"file": big_list()}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "preparing" and body["items"] == [] and body["progress"]["total"] == 0
    assert body["row_errors"][0]["line"] == ROWS + 2, "bad rows are known at once"
    assert prepare_tasks() == [body["id"]] and broker.queue_size() == 1, "only the preparation is queued"

    with django_capture_on_commit_callbacks(execute=True):
        prepare_job(body["id"])
    job = RetrievalJob.objects.get(pk=body["id"])
    assert not job.preparing and job.case_list_text == "" and job.status == "running"
    assert job.items.count() == ROWS and job.items.filter(status=ItemStatus.PENDING).count() == ROWS
    assert broker.queue_size() - 1 <= 2 * job.parallelism(), "a few messages for the workers, not one per row"
    shown = api.get(f"/api/retrievals/{job.pk}/").json()
    assert shown["status"] == "running" and shown["progress"]["total"] == ROWS


def test_a_rerun_of_the_preparation_creates_no_duplicates(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/api/retrievals/", {"file": big_list()}, format="multipart").json()["id"]
    job = RetrievalJob.objects.get(pk=job_id)
    intake.prepare(job, chunk=1000)
    RetrievalJob.objects.filter(pk=job_id).update(preparing=True, case_list_text=big_list().getvalue().decode())
    intake.prepare(RetrievalJob.objects.get(pk=job_id))  # as after a worker died half-way
    assert RetrievalItem.objects.filter(job_id=job_id).count() == ROWS


def test_a_cancel_while_preparing_leaves_every_row_in_the_report(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/api/retrievals/", {"file": big_list()}, format="multipart").json()["id"]
    assert api.post(f"/api/retrievals/{job_id}/cancel/").json()["status"] == "preparing"
    prepare_job(job_id)
    job = RetrievalJob.objects.get(pk=job_id)
    assert job.status == "canceled" and job.items.filter(status=ItemStatus.CANCELED).count() == ROWS
    report = build_report(job)
    assert report["summary"]["rows"] == ROWS + 1 and report["summary"]["canceled"] == ROWS


def test_the_job_body_pages_its_items_and_the_list_carries_none(api, user, server):
    job = RetrievalJob.objects.create(source_name="many.csv", created_by=user)
    RetrievalItem.objects.bulk_create(
        RetrievalItem(job=job, line=n, patient_id=f"P{n}", dicom_server=server, server_name="LK",
                      status=ItemStatus.FAILED if n % 10 == 0 else ItemStatus.SUCCEEDED) for n in range(1, 1001))
    body = api.get(f"/api/retrievals/{job.pk}/").json()
    assert len(body["items"]) == 100 and body["items"][0]["line"] == 1
    assert body["items_page"] == {"page": 1, "page_size": 100, "count": 1000, "pages": 10, "next": 2, "previous": None}
    assert body["progress"]["total"] == 1000 and body["progress"]["failed"] == 100, "counters count every row"
    last = api.get(f"/api/retrievals/{job.pk}/", {"page": 4, "page_size": 300}).json()
    assert [i["line"] for i in last["items"]] == list(range(901, 1001)) and last["items_page"]["next"] is None
    failed = api.get(f"/api/retrievals/{job.pk}/", {"status": "failed", "page_size": 5000}).json()
    assert failed["items_page"]["count"] == 100 and failed["items_page"]["page_size"] == 1000
    assert {i["status"] for i in failed["items"]} == {"failed"}
    assert api.get(f"/api/retrievals/{job.pk}/", {"page": "abc"}).json()["items_page"]["page"] == 1
    listed = api.get("/api/retrievals/").json()
    assert "items" not in listed[0] and listed[0]["progress"]["total"] == 1000


def test_the_admin_job_page_shows_one_page_of_items(admin_client_logged_in, server):
    job = RetrievalJob.objects.create(source_name="many.csv", preparing=True)
    RetrievalItem.objects.bulk_create(
        RetrievalItem(job=job, line=n, patient_id=f"PAT{n:04d}", dicom_server=server, server_name="LK",
                      status=ItemStatus.FAILED if n == 150 else ItemStatus.PENDING) for n in range(1, 251))
    page = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/").content.decode()
    assert page.count('class="item-row"') == 100 and "PAT0001" in page and "PAT0101" not in page
    assert "Page 1 of 3" in page and "Rows (250)" in page
    second = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/",
                                        {"items_page": 2}).content.decode()
    assert "PAT0101" in second and "PAT0001" not in second
    failed = admin_client_logged_in.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/",
                                        {"items_status": "failed"}).content.decode()
    assert failed.count('class="item-row"') == 1 and "PAT0150" in failed
    listing = admin_client_logged_in.get("/admin/retrieval/retrievaljob/").content.decode()
    assert "preparing" in listing


def test_another_users_job_is_a_404(api, django_user_model, server):
    other = django_user_model.objects.create_user("someone-else", password="other-pass-123")
    job = RetrievalJob.objects.create(source_name="theirs.csv", created_by=other)
    for method, path in (("get", f"/api/retrievals/{job.pk}/"), ("get", f"/api/retrievals/{job.pk}/report"),
                         ("post", f"/api/retrievals/{job.pk}/cancel/"), ("post", f"/api/retrievals/{job.pk}/retry/")):
        assert getattr(api, method)(path).status_code == 404, path
    assert api.get("/api/retrievals/").json() == []
    assert not RetrievalJob.objects.get(pk=job.pk).cancel_requested
