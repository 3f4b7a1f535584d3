"""Attacks on the photo upload over real HTTP (the portal under test served by live_server): images that
are small files but huge pictures, too many pixels in one request, an upload without a length, and
patient names DICOM cannot hold. Each is refused before anything is decoded or sent, with a 400 naming
the rule; the web process's memory does not grow with the pixels claimed."""
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from rest_framework.authtoken.models import Token

from apps.photos.models import PhotoUpload
from apps.servers.models import DicomServer
from tests.photos import images

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def bomb_88mp(tmp_path_factory) -> Path:
    """10,000 x 8,800 pixels (88 MP, under Pillow's own 89 MP guard) in a few hundred kB."""
    return images.huge_grey_png(tmp_path_factory.mktemp("bombs") / "88mp.png", 10_000, 8_800)


@pytest.fixture(scope="module")
def photo_45mp(tmp_path_factory) -> Path:
    return images.huge_grey_png(tmp_path_factory.mktemp("big") / "45mp.png", 7_500, 6_000)


@pytest.fixture
def nowhere(photo_settings):
    """A destination that is never reached: every upload here must be refused before sending."""
    server = DicomServer.objects.create(name="NOWHERE", ae_title="NOWHERE", host="127.0.0.1", port=9, retries=0)
    photo_settings.destination = server
    photo_settings.save()
    return server


@pytest.fixture
def http(live_server, user):
    token = Token.objects.create(user=user).key
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Token {token}"}, timeout=120) as client:
        yield client


def status_kb(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def peak_growth_mb(action):
    """(result, how far this process's peak resident memory rose above where it was) while `action` ran."""
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
    before = status_kb("VmRSS")
    result = action()
    return result, (status_kb("VmHWM") - before) / 1024


def post(http, paths, **fields):
    files = [("images[]", (Path(p).name, Path(p).read_bytes(), "image/png")) for p in paths]
    return http.post("/api/studies", data={"patientId": "P-ATTACK", **fields}, files=files)


def test_an_88_megapixel_png_is_refused_from_its_header(http, nowhere, bomb_88mp, settings):
    assert bomb_88mp.stat().st_size < 400_000
    answer, grown = peak_growth_mb(lambda: post(http, [bomb_88mp]))
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["status"] == "error" and body["code"] == "VALIDATION_ERROR"
    assert body["message"].startswith("images[1] (88mp.png): 10000x8800 pixels (88.0 megapixels)")
    assert "50 megapixels per photo (PHOTO_MAX_PIXELS)" in body["message"]
    assert "400 megapixels per upload (PHOTO_MAX_TOTAL_PIXELS)" in body["message"]
    assert grown < 40, f"the web process grew {grown:.0f} MB for a refused photo"
    assert not PhotoUpload.objects.exists()


def test_too_many_pixels_in_one_request_are_refused_before_any_is_decoded(http, nowhere, photo_45mp):
    started = time.monotonic()
    answer, grown = peak_growth_mb(lambda: post(http, [photo_45mp] * 9))  # 405 MP, each under the per-photo limit
    took = time.monotonic() - started
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert message.startswith("images[]: 9 photos of 405.0 megapixels in all")
    assert "400 megapixels per upload (PHOTO_MAX_TOTAL_PIXELS)" in message and "PHOTO_MAX_PIXELS" in message
    assert grown < 40, f"the web process grew {grown:.0f} MB for a refused upload"
    assert took < 10, f"{took:.1f} s: the photos were decoded"
    assert not PhotoUpload.objects.exists()


def test_the_limits_are_settings(http, nowhere, tmp_path, settings):
    settings.PHOTO_MAX_PIXELS = 1_000_000
    small = images.huge_grey_png(tmp_path / "2mp.png", 2_000, 1_000)
    answer = post(http, [small])
    assert answer.status_code == 400
    assert "1 megapixels per photo (PHOTO_MAX_PIXELS)" in answer.json()["message"]


def test_a_photo_within_the_limits_still_goes_through_the_checks(http, nowhere, photo_45mp, settings):
    """45 MP passes the pixel checks and is decoded (the answer is about the unreachable PACS, not its size)."""
    answer, grown = peak_growth_mb(lambda: post(http, [photo_45mp]))
    assert "megapixels" not in answer.text
    assert PhotoUpload.objects.count() == 1
    assert grown < 250, f"decoding one 45 MP grey photo took {grown:.0f} MB"


def test_a_chunked_upload_is_refused_naming_the_missing_length(live_server, user, nowhere):
    """A body sent in chunks reaches Django as an empty form ("patientId is required" before); the answer
    says why and what the limits are, from the headers, before any of the (60 MB) body is read."""
    token = Token.objects.create(user=user).key
    host, port = live_server.thread.host, live_server.thread.port
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall((f"POST /api/studies HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {token}\r\n"
                      "Content-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        reader = conn.makefile("rb")
        status = reader.readline()
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        body = reader.read(int(headers["content-length"])) if "content-length" in headers else reader.read()
    assert status.startswith(b"HTTP/1.1 400"), status
    message = httpx.Response(200, content=body).json()["message"]
    assert message.startswith("images[]: the upload was sent without a Content-Length (chunked)")
    assert "at most 30 photos of 20 MB each" in message
    assert not PhotoUpload.objects.exists()


@pytest.mark.parametrize("name,words", [
    ("Doe=Ideographic", "'=' separates"),
    ("A^B^C^D^E^F", "at most five '^'-separated parts"),
])
def test_a_patient_name_dicom_cannot_hold_is_refused_naming_the_rule(http, nowhere, tmp_path, name, words):
    answer = post(http, [images.plain(tmp_path / "a.png", "PNG")], patientName=name)
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert message.startswith("patientName:") and words in message, message
    assert not PhotoUpload.objects.exists()


def test_a_picture_too_large_even_to_open_names_the_limits(http, nowhere, tmp_path):
    """400 MP in 57 bytes: Pillow itself will not open it; the answer still names the portal's limits."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    answer = post(http, [bomb])
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert message.startswith("images[1] (bomb.png): has more than") and "(PHOTO_MAX_PIXELS)" in message, message


@pytest.mark.parametrize("photo_first", [True, False])
def test_a_photo_over_the_size_limit_says_so_whatever_the_field_order(http, nowhere, photo_first):
    """25 MB in one photo (the limit is 20): the answer names the size rule, not a field the parser never
    reached."""
    image = ("images[]", ("big.jpg", b"\xff\xd8" + b"\x00" * (25 * 2**20), "image/jpeg"))
    fields = [("patientId", (None, b"P-BIG"))]
    answer = http.post("/api/studies", files=[image, *fields] if photo_first else [*fields, image])
    assert answer.status_code == 400
    assert answer.json()["message"] == "images[]: big.jpg is larger than the 20 MB a photo may have."
    assert not PhotoUpload.objects.exists()


def test_an_upload_claiming_more_than_all_photos_may_have_is_refused_before_it_is_read(live_server, user, nowhere):
    token = Token.objects.create(user=user).key
    host, port = live_server.thread.host, live_server.thread.port
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall((f"POST /api/studies HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {token}\r\n"
                      "Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 734003200\r\n\r\n").encode())
        reader = conn.makefile("rb")
        status = reader.readline()
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        body = reader.read(int(headers["content-length"]))
    assert status.startswith(b"HTTP/1.1 400"), status
    assert httpx.Response(200, content=body).json()["message"] == (
        "images[]: the upload is 700 MB; at most 30 photos of 20 MB each are accepted.")
