"""A retrieval that carries a delivery: each batch is delivered as soon as its cases are retrieved
(from a real Orthanc, by C-GET), while the later cases are still to be downloaded."""
import zipfile

import pytest

from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.jobs import runner
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc]


@pytest.fixture
def orthanc_server(db, orthanc):
    peer = orthanc.peer()
    return DicomServer.objects.create(name="ORT", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                      retries=0, retrieve_method="c-get")


@pytest.fixture
def outbox(settings, tmp_path):
    own_data_folders(settings, tmp_path)
    settings.DELIVERY_ROOTS = [tmp_path / "outbox"]
    (tmp_path / "outbox").mkdir()
    return tmp_path / "outbox"


def case_list_csv(orthanc_dataset, count) -> bytes:
    rows = [{"StudyInstanceUID": s["StudyInstanceUID"], "Server": "ORT"} for s in orthanc_dataset["studies"][:count]]
    return intake.rows_to_csv(rows).encode()


def step(item):
    """One item, the way a worker runs it, without going on to the job's next ones."""
    runner.run_item(item._meta.label, item.pk, continue_with_job=False)


def test_batch_one_is_delivered_before_batch_two_has_downloaded(orthanc, orthanc_dataset, orthanc_server, outbox,
                                                                 user, settings):
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    retrieval, = intake.start_jobs(intake.read_case_lists([("t.csv", case_list_csv(orthanc_dataset, 4))], user=user),
                                   user=user, delivery={"target": target, "mode": "zip", "batch_size": 2})
    delivery = retrieval.deliveries.get()
    assert delivery.plan == [[2, 3], [4, 5]] and not delivery.items.exists()  # nothing is downloaded yet
    assert delivery.status == "running"
    rows = list(retrieval.items.order_by("line"))

    for row in rows[:2]:
        step(row)
    retrieval.refresh_status()  # what the worker does at least every JOB_STATUS_SECONDS
    first = delivery.items.get()
    assert first.number == 1 and first.lines == [2, 3] and first.queued_at is not None
    step(first)  # a worker takes batch 1 while rows 4-5 still wait
    first.refresh_from_db()
    assert first.status == "succeeded", first.error
    assert all(r.status == "pending" for r in retrieval.items.filter(pk__in=[r.pk for r in rows[2:]]))
    zip_one = outbox / f"delivery-{delivery.pk}-batch-1.zip"
    names = zipfile.ZipFile(zip_one).namelist()
    assert len(names) == 10 and all(n.startswith("ORT/2021030") for n in names)
    # Batch 1's case folders are cleared; the downloads of rows 4-5 have not even started.
    assert not list(settings.DOWNLOADS_DIR.rglob("*.dcm"))

    for row in rows[2:]:
        step(row)
    retrieval.refresh_status()
    second = delivery.items.get(number=2)
    step(second)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert len(zipfile.ZipFile(outbox / f"delivery-{delivery.pk}-batch-2.zip").namelist()) == 10
    assert first.finished_at < max(r.finished_at for r in retrieval.items.filter(pk__in=[r.pk for r in rows[2:]]))


def test_a_failed_case_is_not_delivered_and_its_batch_says_so(orthanc, orthanc_dataset, orthanc_server, outbox,
                                                             user):
    rows = [{"StudyInstanceUID": orthanc_dataset["studies"][0]["StudyInstanceUID"], "Server": "ORT"},
            {"StudyInstanceUID": "1.2.3.999", "Server": "ORT"}]
    retrieval = RetrievalJob.from_case_list(intake.read_case_list(intake.rows_to_csv(rows), user=user), user=user,
                                            source_name="t", start=False)
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    delivery = DeliveryJob.for_retrieval(retrieval, target, user=user, mode="direct", batch_size=5)
    retrieval.start(user)
    for row in retrieval.items.all():
        step(row)
    retrieval.refresh_status()
    batch = delivery.items.get()
    step(batch)
    batch.refresh_from_db()
    assert batch.status == "succeeded" and batch.files == 5
    assert batch.result["lines"] == [2] and batch.result["skipped_lines"] == [3]
    assert len(list(outbox.rglob("*.dcm"))) == 5


def grant_delivery(user):
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="add_deliveryjob"))


def test_post_retrievals_with_delivery_starts_both_and_batches_follow_the_rows(api, user, orthanc, orthanc_dataset,
                                                                               orthanc_server, outbox):
    grant_delivery(user)
    DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    rows = [{"StudyInstanceUID": s["StudyInstanceUID"], "Server": "ORT"} for s in orthanc_dataset["studies"][:3]]
    response = api.post("/api/retrievals/", {"rows": rows, "delivery": {"target": "BOX", "mode": "direct",
                                                                        "batch_size": 2}}, format="json")
    assert response.status_code == 201, response.data
    delivery = DeliveryJob.objects.get(pk=response.data["deliveries"][0])
    assert delivery.retrieval_id == response.data["id"] and delivery.mode == "direct"
    assert delivery.plan == [[2, 3], [4]] and not delivery.items.exists()
    retrieval = RetrievalJob.objects.get(pk=response.data["id"])
    for row in retrieval.items.order_by("line"):
        step(row)
    retrieval.refresh_status()
    assert [b.cases for b in delivery.items.order_by("number")] == [2, 1]
    for batch in delivery.items.order_by("number"):
        step(batch)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and len(list(outbox.rglob("*.dcm"))) == 15


def test_multipart_case_list_with_delivery_and_the_refusals(api, user, orthanc_server, outbox, orthanc_dataset):
    from django.contrib.auth.models import Permission
    from django.core.files.uploadedfile import SimpleUploadedFile

    DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    csv = f"StudyInstanceUID,Server\n{orthanc_dataset['studies'][0]['StudyInstanceUID']},ORT\n".encode()
    user.user_permissions.remove(Permission.objects.get(codename="add_deliveryjob"))
    refused = api.post("/api/retrievals/", {"file": SimpleUploadedFile("c.csv", csv), "delivery": '{"target": "BOX"}'},
                       format="multipart")
    assert refused.status_code == 400 and "add_deliveryjob" in str(refused.data)
    grant_delivery(user)
    unknown = api.post("/api/retrievals/", {"file": SimpleUploadedFile("c.csv", csv), "delivery": '{"target": "NOPE"}'},
                       format="multipart")
    assert unknown.status_code == 400 and "NOPE" in str(unknown.data)
    garbled = api.post("/api/retrievals/", {"file": SimpleUploadedFile("c.csv", csv), "delivery": "BOX"},
                       format="multipart")
    assert garbled.status_code == 400 and "JSON object" in str(garbled.data)
    assert not RetrievalJob.objects.exists()
    ok = api.post("/api/retrievals/", {"file": SimpleUploadedFile("c.csv", csv),
                                       "delivery": '{"target": "BOX", "batch_size": 5}'}, format="multipart")
    assert ok.status_code == 201 and DeliveryJob.objects.get().batch_size == 5


def test_the_admin_upload_can_carry_a_delivery(admin_client_logged_in, orthanc_server, outbox, orthanc_dataset):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = admin_client_logged_in
    DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    csv = f"StudyInstanceUID,Server\n{orthanc_dataset['studies'][0]['StudyInstanceUID']},ORT\n".encode()
    preview = client.post("/admin/retrieval/retrievaljob/upload/", {
        "files": SimpleUploadedFile("c.csv", csv), "delivery_target": "BOX", "delivery_mode": "zip",
        "delivery_batch_size": "3"})
    page = preview.content.decode()
    assert "Each batch of 3 cases goes to BOX (zip)" in page
    import re

    hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', page))
    started = client.post("/admin/retrieval/retrievaljob/upload/", {**hidden, "confirm": "Start retrieval"})
    assert started.status_code == 302
    delivery = DeliveryJob.objects.get()
    assert delivery.retrieval == RetrievalJob.objects.get() and delivery.batch_size == 3 and delivery.mode == "zip"


def test_a_canceled_delivery_releases_no_more_batches_and_the_retrieval_goes_on(user, orthanc, orthanc_dataset,
                                                                               orthanc_server, outbox):
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    retrieval, = intake.start_jobs(intake.read_case_lists([("t.csv", case_list_csv(orthanc_dataset, 4))], user=user),
                                   user=user, delivery={"target": target, "mode": "zip", "batch_size": 2})
    delivery = retrieval.deliveries.get()
    delivery.cancel(user)
    assert delivery.status == "canceled"
    for row in retrieval.items.all():
        step(row)
    retrieval.refresh_status()
    assert retrieval.status == "succeeded" and not delivery.items.exists() and list(outbox.iterdir()) == []
