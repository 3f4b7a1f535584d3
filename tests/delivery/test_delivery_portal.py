"""Deliveries to another portal over tus (here: this portal under live_server, unpacking into its own
downloads folder): zip and direct batches through a connection that is cut mid-upload, a source that
changed before the resumption, a refused token, and what is kept or cleared."""
import zipfile

import pytest

from apps.audit.models import AuditEvent
from apps.delivery.models import DeliveryJob, DeliveryTarget, Upload
from tests.delivery.conftest import run_released, sha1_tree

pytestmark = pytest.mark.django_db(transaction=True)


def portal_target(url, token, name="FAR"):
    return DeliveryTarget.objects.create(name=name, kind="portal", url=url, token=token)


def test_three_zip_batches_survive_a_cut_connection_and_clear_only_what_was_confirmed(
        retrieved, receiving, uploader, user, cutting_proxy, settings):
    settings.DELIVERY_CHUNK_BYTES = 16 * 1024
    before = sha1_tree(retrieved.source)
    assert len(before) == 30
    seen_at_cut = {}
    proxy = cutting_proxy(130_000, on_cut=lambda: seen_at_cut.update(sha1_tree(retrieved.source)))
    target = portal_target(f"http://127.0.0.1:{proxy.port}", uploader.token)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=2)
    run_released(job)

    assert job.status == "succeeded", [b.error for b in job.items.all()]
    batches = list(job.items.order_by("number"))
    assert [b.cases for b in batches] == [2, 2, 2] and [b.files for b in batches] == [10, 10, 10]
    assert proxy.cuts == 1
    # The cut fell inside batch 2: batch 1 was confirmed and cleared, batches 2 and 3 were still on disk.
    cut_batch = next(b for b in batches if b.result.get("resumed_at"))
    assert cut_batch.number == 2
    batch1_folders = {p.rsplit("/", 1)[0] for p in before} - {p.rsplit("/", 1)[0] for p in seen_at_cut}
    assert len(batch1_folders) == 2 and len(seen_at_cut) == 20
    # Identical files on the receiving side, the originals and zips gone only now.
    assert sha1_tree(receiving.downloads) == before
    assert sha1_tree(retrieved.source) == {} and not list(settings.DELIVERY_ZIP_DIR.glob("*"))
    # Resumed from the server's offset: nothing confirmed was sent twice.
    zip_bytes = sum(b.bytes for b in batches)
    assert all(b.sent_bytes == b.bytes for b in batches)
    assert proxy.forwarded <= zip_bytes + settings.DELIVERY_CHUNK_BYTES + 30_000  # + HTTP headers
    resumed = cut_batch.result["resumed_at"][0]
    assert resumed % settings.DELIVERY_CHUNK_BYTES == 0 and 0 < resumed < cut_batch.bytes
    assert cut_batch.result["sent_this_run"] <= cut_batch.bytes + settings.DELIVERY_CHUNK_BYTES
    assert {u.state for u in Upload.objects.all()} == {"unpacked"} and Upload.objects.count() == 3
    events = AuditEvent.objects.filter(action="delivery.batch").order_by("id")
    assert [e.details["batch"] for e in events] == [1, 2, 3]
    assert events[0].actor == user and events[0].details["result"] == "delivered"
    assert events[0].details["lines"] == [2, 3] and "FAR (portal" in events[0].details["to"]


def test_a_refused_token_fails_the_batch_with_the_reason_and_keeps_every_file(retrieved, receiving, user):
    before = sha1_tree(retrieved.source)
    target = portal_target(receiving.url, "not-the-token")
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=3)
    run_released(job)
    assert job.status == "failed"
    batch = job.items.order_by("number").first()
    assert "refused our credentials (HTTP 401" in batch.error and "Nothing was deleted" in batch.error
    assert sha1_tree(retrieved.source) == before
    assert not receiving.downloads.exists() or sha1_tree(receiving.downloads) == {}
    event = AuditEvent.objects.filter(action="delivery.batch").first()
    assert event.details["result"] == "failed" and "401" in event.details["error"]


def test_direct_mode_streams_each_batch_through_a_cut_connection_and_writes_no_zip(
        retrieved, receiving, uploader, user, cutting_proxy, settings, tmp_path):
    settings.DELIVERY_CHUNK_BYTES = 16 * 1024
    before = sha1_tree(retrieved.source)
    proxy = cutting_proxy(130_000)
    target = portal_target(f"http://127.0.0.1:{proxy.port}", uploader.token)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="direct", batch_size=4)
    run_released(job)
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    batches = list(job.items.order_by("number"))
    assert [b.files for b in batches] == [20, 10] and proxy.cuts == 1
    assert [bool(b.result.get("resumed_at")) for b in batches] == [True, False]
    # One upload a batch, unpacked there; identical files; the originals cleared only then.
    assert {u.state for u in Upload.objects.all()} == {"unpacked"} and Upload.objects.count() == 2
    assert sha1_tree(receiving.downloads) == before and sha1_tree(retrieved.source) == {}
    # Nothing confirmed was sent twice, and no zip was ever written on the sending side.
    assert proxy.forwarded <= sum(b.bytes for b in batches) + settings.DELIVERY_CHUNK_BYTES + 30_000
    assert batches[0].result["sent_this_run"] <= batches[0].bytes + settings.DELIVERY_CHUNK_BYTES
    assert not list(tmp_path.rglob("*.zip*"))
    assert job.progress()["files"] == 30 and job.progress()["sent_megabytes"] > 0


def test_a_file_changed_between_a_cut_and_the_retry_is_never_confirmed(
        retrieved, receiving, uploader, user, cutting_proxy, settings):
    settings.DELIVERY_CHUNK_BYTES, settings.DELIVERY_RETRIES = 16 * 1024, 0
    proxy = cutting_proxy(100_000)
    target = portal_target(f"http://127.0.0.1:{proxy.port}", uploader.token)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="direct", batch_size=6)
    run_released(job)
    assert job.status == "failed" and Upload.objects.get().offset > 20_000
    first = retrieved.source / sorted(sha1_tree(retrieved.source))[0]  # its bytes already reached the far end
    first.write_bytes(first.read_bytes()[:-100] + bytes(100))  # same size, other pixels
    before = sha1_tree(retrieved.source)

    job.retry_failed(user)
    run_released(job)  # the rest is sent, but the far end's copy of the first file has the old bytes
    batch = job.items.get()
    assert job.status == "failed" and "Bad CRC-32" in batch.error and "Nothing was deleted" in batch.error
    assert sha1_tree(retrieved.source) == before and batch.upload_url == ""
    assert Upload.objects.get().state == "failed"
    assert not receiving.downloads.exists() or sha1_tree(receiving.downloads) == {}

    job.retry_failed(user)
    run_released(job)  # a fresh upload of what the files hold now
    assert job.status == "succeeded" and Upload.objects.filter(state="unpacked").count() == 1
    assert sha1_tree(receiving.downloads) == before and sha1_tree(retrieved.source) == {}


def test_zip_mode_can_keep_the_zip_and_the_originals(retrieved, receiving, uploader, user, settings):
    before = sha1_tree(retrieved.source)
    target = portal_target(receiving.url, uploader.token)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=6, keep_zip=True,
                                    clear=False)
    run_released(job)
    assert job.status == "succeeded"
    assert sha1_tree(retrieved.source) == before and sha1_tree(receiving.downloads) == before
    assert [p.name for p in settings.DELIVERY_ZIP_DIR.glob("*.zip")] == [f"delivery-{job.pk}-batch-1.zip"]
    kept = settings.DELIVERY_ZIP_DIR / f"delivery-{job.pk}-batch-1.zip"
    batch = job.items.get()
    assert batch.zip_path == str(kept) and kept.stat().st_size == batch.bytes  # the very bytes that were sent
    with zipfile.ZipFile(kept) as bundle:
        assert bundle.testzip() is None and sorted(bundle.namelist()) == sorted(before)


def test_a_batch_failed_mid_upload_resumes_on_retry_without_resending_confirmed_bytes(
        retrieved, receiving, uploader, user, cutting_proxy, settings):
    settings.DELIVERY_CHUNK_BYTES, settings.DELIVERY_RETRIES = 16 * 1024, 0
    before = sha1_tree(retrieved.source)
    proxy = cutting_proxy(100_000)
    target = portal_target(f"http://127.0.0.1:{proxy.port}", uploader.token)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=6)
    run_released(job)
    batch = job.items.get()
    assert job.status == "failed" and "connection" in batch.error and "Nothing was deleted" in batch.error
    assert sha1_tree(retrieved.source) == before and batch.upload_url
    confirmed = Upload.objects.get().offset
    assert confirmed > 0 and confirmed % settings.DELIVERY_CHUNK_BYTES == 0

    job.retry_failed(user)
    run_released(job)
    batch.refresh_from_db()
    assert job.status == "succeeded" and Upload.objects.count() == 1
    assert batch.result["started_at_offset"] == confirmed
    assert batch.result["sent_this_run"] == batch.bytes - confirmed
    assert sha1_tree(receiving.downloads) == before and sha1_tree(retrieved.source) == {}
