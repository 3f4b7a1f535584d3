"""The sender against the receiving end: resuming someone else's unchecked start compares whole files;
a receiving end whose copy differs is never confirmed."""
import base64
import hashlib

import httpx
import pytest

from apps.delivery.tus_client import TusError, TusSender

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def started_without_checksums(receiving, uploader, tmp_path):
    """A 50 kB file whose first 20 kB were sent by another client without Upload-Checksum."""
    path = tmp_path / "LK_a.dcm"
    path.write_bytes(bytes(range(256)) * 200)
    headers = {"Authorization": f"Token {uploader.token}", "Tus-Resumable": "1.0.0"}
    created = httpx.post(f"{receiving.url}/api/uploads/", headers={
        **headers, "Upload-Length": str(path.stat().st_size),
        "Upload-Metadata": f"filename {base64.b64encode(b'LK/a_1_CT/1.dcm').decode()}"})
    url = created.headers["Location"]

    def send_first(data: bytes):
        httpx.patch(url, content=data, headers={**headers, "Upload-Offset": "0",
                                                "Content-Type": "application/offset+octet-stream"})
    return path, url, send_first


def test_resuming_an_unchecked_start_compares_the_whole_file(receiving, uploader, started_without_checksums):
    path, url, send_first = started_without_checksums
    send_first(path.read_bytes()[:20_000])
    with TusSender(f"{receiving.url}/api/uploads/", uploader.token, chunk_size=8192) as sender:
        receipt = sender.send(path, "LK/a_1_CT/1.dcm", url=url)
    assert receipt.started_at == 20_000 and receipt.sent_bytes == path.stat().st_size - 20_000
    assert receipt.verified == 0 and receipt.sha1 == hashlib.sha1(path.read_bytes()).hexdigest()
    assert (receiving.downloads / "LK/a_1_CT/1.dcm").read_bytes() == path.read_bytes()


def test_a_different_copy_on_the_receiving_end_is_never_confirmed(receiving, uploader, started_without_checksums):
    path, url, send_first = started_without_checksums
    send_first(b"X" * 20_000)  # not what the file holds
    with TusSender(f"{receiving.url}/api/uploads/", uploader.token, chunk_size=8192) as sender:
        with pytest.raises(TusError, match="copy has sha1"):
            sender.send(path, "LK/a_1_CT/1.dcm", url=url)


def test_a_throttled_sender_waits_as_long_as_the_server_asks_and_goes_on(receiving, uploader, tmp_path, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, "uploads": "3/min"})
    path = tmp_path / "f.bin"
    path.write_bytes(b"z" * 50_000)
    waits = []

    def sleep(seconds):  # time passes: the server's window resets
        waits.append(seconds)
        cache.clear()

    with TusSender(f"{receiving.url}/api/uploads/", uploader.token, chunk_size=10_000, sleep=sleep) as sender:
        receipt = sender.send(path, "LK/t_1_CT/1.dcm")
    assert receipt.verified == 50_000 and waits and all(w >= 1 for w in waits)
    assert (receiving.downloads / "LK/t_1_CT/1.dcm").read_bytes() == path.read_bytes()


def test_the_sender_waits_while_the_receiving_end_unpacks(live_server, uploader, settings, tmp_path, broker,
                                                          trusted_loopback):
    """A zip is unpacked by the receiving end's worker after the last chunk: the sender asks again until
    it is; here the worker runs whenever the sender waits."""
    import io
    import zipfile

    from django_q.signing import SignedPackage

    from apps.delivery.receiving import unpack_upload

    settings.DOWNLOADS_DIR, settings.UPLOADS_DIR = tmp_path / "downloads", tmp_path / "uploads"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("LK/a_1_CT/1.dcm", b"one")
        bundle.writestr("LK/a_1_CT/2.dcm", b"two")
    (tmp_path / "batch.zip").write_bytes(buffer.getvalue())
    waits = []

    def worker_runs(seconds):
        waits.append(seconds)
        for message in broker.connection.order_by("id"):
            task = SignedPackage.loads(message.payload)
            message.delete()
            unpack_upload(*task["args"])

    with TusSender(f"{live_server.url}/api/uploads/", uploader.token, sleep=worker_runs) as sender:
        receipt = sender.send(tmp_path / "batch.zip", "batch.zip")
    assert waits and receipt.state == "unpacked" and receipt.files == 2
    assert (tmp_path / "downloads/received/far-site/LK/a_1_CT/2.dcm").read_bytes() == b"two"
