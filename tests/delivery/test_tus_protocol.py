"""The receiving end speaks tus 1.0.0: each protocol rule by raw HTTP, and a whole upload by tuspy."""
import base64
import hashlib
import io
import zipfile
import zlib

import httpx
import pytest
from django.utils.http import parse_http_date

from apps.audit.models import AuditEvent
from apps.delivery.models import Upload

pytestmark = pytest.mark.django_db(transaction=True)
TUS = {"Tus-Resumable": "1.0.0"}


def meta(**values) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}".strip() for k, v in values.items())


def b64sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


@pytest.fixture
def http(receiving, uploader):
    with httpx.Client(base_url=receiving.url, headers={"Authorization": f"Token {uploader.token}", **TUS},
                      timeout=30) as client:
        yield client


def create(http, length: int, filename: str = "LK/20220501_DLV00001_CT/1.2.3.dcm", **headers) -> str:
    response = http.post("/api/uploads/", headers={"Upload-Length": str(length),
                                                   "Upload-Metadata": meta(filename=filename), **headers})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def patch(http, url: str, offset: int, data: bytes, **headers) -> httpx.Response:
    return http.patch(url, content=data, headers={"Content-Type": "application/offset+octet-stream",
                                                  "Upload-Offset": str(offset), **headers})


def test_discovery_lists_version_extensions_size_and_checksum(http, settings):
    response = http.options("/api/uploads/")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {"creation", "creation-with-upload", "checksum",
                                                                 "termination", "expiration"}
    assert response.headers["Tus-Checksum-Algorithm"].split(",") == ["crc32", "sha1"]
    assert int(response.headers["Tus-Max-Size"]) == settings.UPLOAD_MAX_BYTES


def test_creation_head_patch_and_the_file_lands_in_downloads(http, receiving):
    data = b"A" * 1000 + b"B" * 500
    url = create(http, len(data))
    assert url.startswith(receiving.url + "/api/uploads/")
    head = http.head(url)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "0" and head.headers["Upload-Length"] == "1500"
    assert head.headers["Cache-Control"] == "no-store" and head.headers["Tus-Resumable"] == "1.0.0"
    first = patch(http, url, 0, data[:1000], **{"Upload-Checksum": f"sha1 {b64sha1(data[:1000])}"})
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "1000"
    assert parse_http_date(first.headers["Upload-Expires"]) > 0
    assert http.head(url).headers["Upload-Offset"] == "1000"
    last = patch(http, url, 1000, data[1000:])
    assert last.status_code == 204 and last.headers["Upload-Offset"] == "1500"
    assert (receiving.downloads / "LK/20220501_DLV00001_CT/1.2.3.dcm").read_bytes() == data
    outcome = http.get(url).json()
    assert outcome["state"] == "stored" and outcome["verified"] == 1000  # the second chunk came unchecked
    assert outcome["sha1"] == hashlib.sha1(data).hexdigest()  # so the whole file was hashed
    assert AuditEvent.objects.filter(action="upload.received", actor__username="far-site").count() == 1


def test_creation_with_upload_completes_in_one_request_and_says_so(http, receiving):
    data = b"small file" * 100
    response = http.post("/api/uploads/", content=data, headers={
        "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="LK/a_1_CT/9.dcm"),
        "Content-Type": "application/offset+octet-stream", "Upload-Checksum": f"sha1 {b64sha1(data)}"})
    assert response.status_code == 201 and response.headers["Upload-Offset"] == str(len(data))
    assert response.headers["Upload-State"] == "stored" and response.headers["Upload-Files"] == "1"
    assert response.headers["Upload-Verified"] == str(len(data)) and "Upload-Sha1" not in response.headers
    assert (receiving.downloads / "LK/a_1_CT/9.dcm").read_bytes() == data
    damaged = http.post("/api/uploads/", content=data, headers={
        "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="LK/a_1_CT/10.dcm"),
        "Content-Type": "application/offset+octet-stream", "Upload-Checksum": f"sha1 {b64sha1(b'other')}"})
    assert damaged.status_code == 460 and not (receiving.downloads / "LK/a_1_CT/10.dcm").exists()


def test_a_patch_at_the_wrong_offset_is_409_and_changes_nothing(http):
    url = create(http, 10)
    assert patch(http, url, 0, b"12345").status_code == 204
    conflict = patch(http, url, 3, b"zzzzz")
    assert conflict.status_code == 409 and conflict.headers["Upload-Offset"] == "5"
    assert http.head(url).headers["Upload-Offset"] == "5"


def test_a_chunk_with_a_wrong_sha1_is_460_and_dropped(http):
    url = create(http, 10)
    bad = patch(http, url, 0, b"0123456789", **{"Upload-Checksum": f"sha1 {b64sha1(b'something else')}"})
    assert bad.status_code == 460
    assert http.head(url).headers["Upload-Offset"] == "0"
    unknown = patch(http, url, 0, b"0123456789", **{"Upload-Checksum": "md5 AAAA"})
    assert unknown.status_code == 400 and "sha1" in unknown.json()["error"]


def test_a_crc32_chunk_is_checked_too_460_when_it_does_not_match(http):
    url = create(http, 10)
    bad = patch(http, url, 0, b"0123456789", **{"Upload-Checksum": f"crc32 {b64crc32(b'something else')}"})
    assert bad.status_code == 460 and http.head(url).headers["Upload-Offset"] == "0"
    good = patch(http, url, 0, b"0123456789", **{"Upload-Checksum": f"crc32 {b64crc32(b'0123456789')}"})
    assert good.status_code == 204 and good.headers["Upload-Verified"] == "10"


def b64crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_termination_deletes_the_upload_and_its_bytes(http):
    url = create(http, 10)
    patch(http, url, 0, b"12345")
    upload = Upload.objects.get()
    assert upload.data_path.exists()
    assert http.delete(url).status_code == 204
    assert not upload.data_path.exists()
    assert http.head(url).status_code == 404


def test_an_expired_upload_is_gone(http):
    url = create(http, 10)
    Upload.objects.update(expires_at="2000-01-01T00:00:00Z")
    assert http.head(url).status_code == 410
    assert patch(http, url, 0, b"12345").status_code == 410


def test_requests_without_tus_resumable_are_412(http):
    response = http.post("/api/uploads/", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "5",
                                                   "Upload-Metadata": meta(filename="a.dcm")})
    assert response.status_code == 412 and response.headers["Tus-Version"] == "1.0.0"
    assert not Upload.objects.exists()


def test_size_limit_content_type_and_length_rules(http, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    too_big = http.post("/api/uploads/", headers={"Upload-Length": "1001", "Upload-Metadata": meta(filename="a.dcm")})
    assert too_big.status_code == 413 and "1000" in too_big.json()["error"]
    deferred = http.post("/api/uploads/", headers={"Upload-Defer-Length": "1", "Upload-Metadata": meta(filename="a.dcm")})
    assert deferred.status_code == 400
    url = create(http, 5, filename="a.dcm")
    wrong_type = http.patch(url, content=b"12345", headers={"Content-Type": "application/json", "Upload-Offset": "0"})
    assert wrong_type.status_code == 415
    past_end = patch(http, url, 0, b"123456")
    assert past_end.status_code == 400 and http.head(url).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("name", ["../etc/passwd", "/tmp/x.dcm", "LK/../../x.dcm", "C:/x.dcm", "LK\\x.dcm",
                                  ".hidden/x.dcm", ""])
def test_an_unsafe_filename_is_refused_at_creation(http, name):
    response = http.post("/api/uploads/", headers={"Upload-Length": "5", "Upload-Metadata": meta(filename=name)})
    assert response.status_code == 400 and "filename" in response.json()["error"]
    assert not Upload.objects.exists()


def test_token_permission_and_ownership(receiving, uploader, user, django_user_model):
    from rest_framework.authtoken.models import Token

    base = {"Upload-Length": "5", "Upload-Metadata": meta(filename="a.dcm"), **TUS}
    nobody = httpx.post(f"{receiving.url}/api/uploads/", headers=base)
    assert nobody.status_code == 401
    wrong = httpx.post(f"{receiving.url}/api/uploads/", headers={**base, "Authorization": "Token not-a-token"})
    assert wrong.status_code == 401
    nobody = django_user_model.objects.create_user(username="nobody", password="nobody-pass-1")
    plain_token = Token.objects.create(user=nobody).key
    no_permission = httpx.post(f"{receiving.url}/api/uploads/", headers={**base, "Authorization": f"Token {plain_token}"})
    assert no_permission.status_code == 403 and "add_upload" in no_permission.text
    mine = httpx.post(f"{receiving.url}/api/uploads/", headers={**base, "Authorization": f"Token {uploader.token}"})
    url = mine.headers["Location"]
    other = django_user_model.objects.create_superuser(username="other-site", password="x-pass-123456", email="")
    theirs = {"Authorization": f"Token {Token.objects.create(user=other).key}", **TUS}
    assert httpx.head(url, headers=theirs).status_code == 404
    assert httpx.delete(url, headers=theirs).status_code == 404
    assert Upload.objects.filter(pk=url.rstrip("/").rsplit("/", 1)[1]).exists()


def test_tuspy_uploads_a_zip_in_checksummed_chunks_and_it_is_unpacked(receiving, uploader):
    from tusclient import client as tus_client

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("LK/20220501_DLV00001_CT/1.2.3.4.dcm", b"x" * 70000)
        bundle.writestr("LK/20220502_DLV00002_MR/1.2.3.5.dcm", b"y" * 50000)
    data = buffer.getvalue()
    tus = tus_client.TusClient(f"{receiving.url}/api/uploads/", headers={"Authorization": f"Token {uploader.token}"})
    uploader_ = tus.uploader(file_stream=io.BytesIO(data), chunk_size=16384, upload_checksum=True,
                             metadata={"filename": "batch-1.zip"})
    uploader_.upload()
    assert uploader_.offset == len(data)
    upload = Upload.objects.get()
    assert upload.state == "unpacked" and upload.files == 2 and upload.verified == len(data)
    assert (receiving.downloads / "LK/20220501_DLV00001_CT/1.2.3.4.dcm").read_bytes() == b"x" * 70000
    assert (receiving.downloads / "LK/20220502_DLV00002_MR/1.2.3.5.dcm").read_bytes() == b"y" * 50000
    assert not upload.data_path.exists()


def cut_patch(receiving, token: str, url: str, body: bytes, declared: int, checksum: str = "") -> bytes:
    """A PATCH that declares `declared` bytes, sends `body` and stops sending (a half-closed connection:
    the server reads the end of the body where more was declared). Returns the server's answer head,
    read to its end: once it arrived, the server has handled the cut request."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    request = (f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Token {token}\r\n"
               f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
               f"Content-Length: {declared}\r\n" + (f"Upload-Checksum: sha1 {checksum}\r\n" if checksum else "")
               + "\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(request + body)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n\r\n" not in answer:
            block = conn.recv(4096)
            assert block, f"the server hung up without answering: {answer!r}"
            answer += block
    return answer.split(b"\r\n", 1)[0]


def test_a_cut_patch_keeps_what_arrived_unless_it_carried_a_checksum(http, receiving, uploader):
    plain = create(http, 10)
    assert b" 204 " in cut_patch(receiving, uploader.token, plain, b"12345", declared=10)
    assert http.head(plain).headers["Upload-Offset"] == "5"
    assert patch(http, plain, 5, b"67890").status_code == 204
    checked = create(http, 10)
    assert b" 400 " in cut_patch(receiving, uploader.token, checked, b"12345", declared=10,
                                 checksum=b64sha1(b"1234567890"))
    assert http.head(checked).headers["Upload-Offset"] == "0"


def test_verified_bytes_count_only_checksummed_chunks_from_the_start(http):
    data = bytes(range(256)) * 40
    url = create(http, len(data))
    patch(http, url, 0, data[:4000], **{"Upload-Checksum": f"sha1 {b64sha1(data[:4000])}"})
    patch(http, url, 4000, data[4000:7000])
    patch(http, url, 7000, data[7000:], **{"Upload-Checksum": f"sha1 {b64sha1(data[7000:])}"})
    outcome = http.get(url).json()
    assert outcome["verified"] == 4000 and outcome["sha1"] == hashlib.sha1(data).hexdigest()
