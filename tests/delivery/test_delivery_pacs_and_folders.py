"""Deliveries to a real Orthanc by STOW-RS and by C-STORE (always direct), and to folders (zip or
direct), with every source kept when the target did not confirm every instance."""
import zipfile

import pydicom
import pytest

from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.servers.models import DicomServer
from tests.delivery.conftest import run_released, sha1_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc, pytest.mark.usefixtures("trusted_loopback")]


def sop_uids(root):
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in root.rglob("*.dcm")}


def pacs_server(orthanc, **fields):
    peer = orthanc.peer()
    return DicomServer.objects.create(**{"name": "SPARE", "ae_title": peer.ae_title, "host": peer.host,
                                         "port": peer.port, "retries": 0, **fields})


def test_stow_rs_target_puts_every_instance_into_orthanc(retrieved, empty_orthanc, user, settings):
    settings.DELIVERY_STOW_BATCH = 7  # several instances per request, several requests per batch
    expected = sop_uids(retrieved.source)
    server = pacs_server(empty_orthanc, dicomweb_url=empty_orthanc.dicomweb().base_url)
    target = DeliveryTarget.objects.create(name="WEB", kind="dicomweb", server=server)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=3)
    assert job.mode == "direct"  # a PACS takes instances, never zips
    run_released(job)
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    assert empty_orthanc.instances() == expected
    assert sha1_tree(retrieved.source) == {}


def test_c_store_target_puts_every_instance_into_orthanc(retrieved, empty_orthanc, user):
    expected = sop_uids(retrieved.source)
    target = DeliveryTarget.objects.create(name="PACS", kind="dicom", server=pacs_server(empty_orthanc))
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, batch_size=4)
    run_released(job)
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    assert empty_orthanc.instances() == expected
    assert sha1_tree(retrieved.source) == {}


def test_a_pacs_that_refuses_the_association_keeps_every_file(retrieved, empty_orthanc, user):
    before = sha1_tree(retrieved.source)
    server = pacs_server(empty_orthanc, ae_title="WRONGAET")
    target = DeliveryTarget.objects.create(name="PACS", kind="dicom", server=server)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, batch_size=6)
    run_released(job)
    batch = job.items.get()
    assert job.status == "failed" and "Nothing was deleted" in batch.error and "WRONGAET" in batch.error
    assert sha1_tree(retrieved.source) == before and empty_orthanc.instances() == set()


@pytest.fixture
def outbox(settings, tmp_path):
    settings.DELIVERY_ROOTS = [tmp_path / "outbox"]
    (tmp_path / "outbox" / "site-b").mkdir(parents=True)
    return tmp_path / "outbox" / "site-b"


def test_folder_target_in_zip_mode_gets_one_zip_per_batch(retrieved, outbox, user, tmp_path, settings):
    settings.DELIVERY_ZIP_DIR = tmp_path / "zips"
    before = sha1_tree(retrieved.source)
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=4)
    run_released(job)
    assert job.status == "succeeded"
    zips = sorted(p.name for p in outbox.iterdir())
    assert zips == [f"delivery-{job.pk}-batch-1.zip", f"delivery-{job.pk}-batch-2.zip"]
    names = set()
    for name in zips:
        names |= set(zipfile.ZipFile(outbox / name).namelist())
    assert names == set(before)
    assert sha1_tree(retrieved.source) == {} and not list(settings.DELIVERY_ZIP_DIR.glob("*.zip"))


def test_folder_target_in_direct_mode_gets_the_layout(retrieved, outbox, user):
    before = sha1_tree(retrieved.source)
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    run_released(DeliveryJob.for_retrieval(retrieved, target, user=user, mode="direct", batch_size=6))
    assert sha1_tree(outbox) == before and sha1_tree(retrieved.source) == {}


def test_a_folder_that_left_the_roots_fails_and_keeps_the_files(retrieved, outbox, user, settings, tmp_path):
    before = sha1_tree(retrieved.source)
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    settings.DELIVERY_ROOTS = [tmp_path / "elsewhere"]
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="direct", batch_size=6)
    run_released(job)
    assert job.status == "failed" and "not inside an allowed delivery folder" in job.items.get().error
    assert sha1_tree(retrieved.source) == before and list(outbox.iterdir()) == []


def test_a_direct_batch_that_failed_halfway_resumes_after_the_files_already_delivered(retrieved, outbox, user):
    before = sha1_tree(retrieved.source)
    names = sorted(before)
    (outbox / names[6]).mkdir(parents=True)  # the 7th file cannot be written: a folder stands in its place
    target = DeliveryTarget.objects.create(name="BOX", kind="folder", path=str(outbox))
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="direct", batch_size=6)
    run_released(job)
    batch = job.items.get()
    assert job.status == "failed" and "Nothing was deleted" in batch.error
    assert batch.result["confirmed_files"] == 6 and sha1_tree(retrieved.source) == before
    delivered = {name: (outbox / name).stat().st_ino for name in names[:6]}

    (outbox / names[6]).rmdir()
    job.retry_failed(user)
    run_released(job)
    assert job.status == "succeeded"
    assert {name: (outbox / name).stat().st_ino for name in names[:6]} == delivered  # not copied again
    assert sha1_tree(outbox) == before and sha1_tree(retrieved.source) == {}
