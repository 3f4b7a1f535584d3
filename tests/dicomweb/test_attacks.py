"""Attacks on /dicomweb/ from outside: another account's token searching and guessing UIDs, catalog rows
naming files outside the data folders, hostile STOW bodies (non-DICOM, oversize, path-like UIDs, malformed
framing: boundaries across read edges, no closing boundary, endless headers, millions of parts), no login."""
import io
import json
import os
import tracemalloc

import pydicom
import pytest
from django.contrib.auth.models import Permission

from apps.catalog.filing import catalog_files
from apps.catalog.models import Instance
from apps.delivery.deliver import clear_files
from apps.dicom.multipart import MultipartError
from apps.dicom.multipart_reader import CHUNK_BYTES, MAX_PARTS, read_parts
from tests.dicomweb.conftest import files_of
from tests.dicomweb.helpers import stow_body, token_client

pytestmark = pytest.mark.django_db


def bob_urls(catalogued):
    study = catalogued["bob_data"]["studies"][0]
    uid = study["StudyInstanceUID"]
    series = study["Series"][0]["SeriesInstanceUID"]
    sop = pydicom.dcmread(files_of(catalogued["downloads"], study)[0], stop_before_pixels=True).SOPInstanceUID
    base = f"/dicomweb/studies/{uid}"
    return uid, [base, f"{base}/metadata", f"{base}/rendered", f"{base}/thumbnail", f"{base}/series/{series}",
                 f"{base}/series/{series}/metadata", f"{base}/series/{series}/instances/{sop}",
                 f"{base}/series/{series}/instances/{sop}/metadata", f"{base}/series/{series}/instances/{sop}/frames/1",
                 f"{base}/series/{series}/instances/{sop}/rendered", f"{base}/series/{series}/instances/{sop}/thumbnail"]


def test_another_accounts_study_is_never_found_guessed_uids_included(catalogued):
    alice = token_client(catalogued["alice"])
    uid, urls = bob_urls(catalogued)
    for query in ({}, {"PatientName": "*"}, {"PatientID": "BBB*"}, {"StudyInstanceUID": uid},
                  {"PatientID": catalogued["bob_data"]["studies"][0]["PatientID"]}):
        response = alice.get("/dicomweb/studies", query)
        found = [] if response.status_code == 204 else [s["0020000D"]["Value"][0] for s in json.loads(response.content)]
        assert uid not in found, query
    for level in ("series", "instances"):
        assert alice.get(f"/dicomweb/{level}", {"StudyInstanceUID": uid}).status_code == 204
    assert alice.get(f"/dicomweb/studies/{uid}/series").status_code == 204
    for url in urls:
        response = alice.get(url)
        assert response.status_code == 404, url
        assert "application/json" in response["Content-Type"] and "detail" in response.json()
    viewer = token_client(catalogued["viewer"])  # "view all jobs" sees both accounts' studies
    assert len(json.loads(viewer.get("/dicomweb/studies").content)) == 3
    assert all(viewer.get(url).status_code == 200 for url in urls)


def test_no_login_no_answer(catalogued):
    from rest_framework.test import APIClient

    _, urls = bob_urls(catalogued)
    anonymous = APIClient()
    for url in ["/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances", "/dicomweb/nothing-here", *urls]:
        response = anonymous.get(url)
        assert response.status_code == 401 and response.json()["detail"], url
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert wrong.get("/dicomweb/studies").status_code == 401


def test_an_unknown_or_malformed_path_is_a_json_404_not_a_page(catalogued):
    alice = token_client(catalogued["alice"])
    for url in ("/dicomweb/", "/dicomweb/nothing-here", "/dicomweb/studies/1.2.3<script>", "/dicomweb/studies/1.2/x",
                "/dicomweb/studies/1.2/series/1.3/instances/1.4/frames/a", "/dicomweb/../admin/"):
        response = alice.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"] == "application/json" and "no such DICOMweb resource" in response.json()["detail"]
        assert "<script>" not in response.content.decode()


def test_a_catalog_row_naming_a_file_outside_the_data_folders_is_never_served(catalogued, tmp_path, settings):
    alice = token_client(catalogued["alice"])
    outside = tmp_path / "outside.dcm"  # a real DICOM file, outside DOWNLOADS_DIR
    outside.write_bytes(files_of(catalogued["downloads"], catalogued["bob_data"]["studies"][0])[0].read_bytes())
    values = {f.attname: getattr(Instance.objects.filter(owner=catalogued["alice"]).first(), f.attname)
              for f in Instance._meta.concrete_fields if f.attname not in ("id", "path")}
    study = "1.2.826.0.1.3680043.8.498.999"
    Instance.objects.create(**{**values, "path": str(outside), "study_instance_uid": study})
    Instance.objects.create(**{**values, "path": "/etc/passwd", "study_instance_uid": study,
                               "sop_instance_uid": "1.2.3.4"})
    link = catalogued["downloads"] / "LK" / "alice" / "link.dcm"  # inside by name, outside by target
    os.symlink(outside, link)
    try:
        assert catalog_files([link, outside], source="retrieved", owner=catalogued["alice"]) == 0
        Instance.objects.create(**{**values, "path": str(link), "study_instance_uid": study, "sop_instance_uid": "1.2.5"})
        for url in (f"/dicomweb/studies/{study}", f"/dicomweb/studies/{study}/metadata",
                    f"/dicomweb/studies/{study}/rendered"):
            assert alice.get(url).status_code == 404, url
    finally:
        link.unlink()


def test_a_file_removed_by_delivery_clear_disappears(catalogued):
    alice = token_client(catalogued["alice"])
    study = catalogued["alice_data"]["studies"][0]
    paths = files_of(catalogued["downloads"], study)
    saved = {p: p.read_bytes() for p in paths}
    try:
        clear_files(paths, catalogued["downloads"])
        assert alice.get("/dicomweb/studies", {"StudyInstanceUID": study["StudyInstanceUID"]}).status_code == 204
        assert alice.get(f"/dicomweb/studies/{study['StudyInstanceUID']}").status_code == 404
    finally:  # the module's files are shared by its tests
        for path, data in saved.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


@pytest.fixture
def storer(catalogued):
    alice = catalogued["alice"]
    alice.user_permissions.add(Permission.objects.get(codename="store_dicomweb"))
    return token_client(alice)


def post(client, parts, **extra):
    body, content_type = stow_body(parts)
    return client.generic("POST", "/dicomweb/studies", body, content_type=content_type, **extra)


def test_stow_of_a_non_dicom_part_fails_that_part(storer, settings):
    response = post(storer, [("application/dicom", b"\x00" * 128 + b"DICM" + b"garbage")])
    assert response.status_code == 409
    failed = json.loads(response.content)["00081198"]["Value"]
    assert len(failed) == 1 and failed[0]["00081197"]["Value"] == [0xC000]
    assert not (settings.DOWNLOADS_DIR / "received" / "alice").exists() or not list(
        (settings.DOWNLOADS_DIR / "received" / "alice").rglob("*.dcm"))


def test_an_oversize_stow_body_is_refused_413_before_it_is_read(storer, catalogued, settings):
    settings.DICOMWEB_STOW_MAX_BYTES = 1000
    data = files_of(catalogued["downloads"], catalogued["bob_data"]["studies"][0])[0].read_bytes()
    response = post(storer, [("application/dicom", data)])
    assert response.status_code == 413 and "DICOMWEB_STOW_MAX_MB" in response.json()["detail"]
    assert not Instance.objects.filter(source="stored").exists()


def test_stow_without_the_permission_or_with_a_wrong_body(catalogued):
    bob = token_client(catalogued["bob"])
    response = post(bob, [("application/dicom", b"x")])
    assert response.status_code == 403 and "store" in response.json()["detail"]
    alice = catalogued["alice"]
    alice.user_permissions.add(Permission.objects.get(codename="store_dicomweb"))
    client = token_client(alice)
    assert client.post("/dicomweb/studies", {"a": 1}, format="json").status_code == 415
    cut = client.generic("POST", "/dicomweb/studies", b"--b\r\nContent-Type: application/dicom\r\n\r\nabc",
                         content_type='multipart/related; type="application/dicom"; boundary=b')
    assert cut.status_code == 400 and "cut short" in cut.json()["detail"]


def test_stow_of_path_like_uids_writes_nothing_outside(storer, catalogued, settings, tmp_path):
    ds = pydicom.dcmread(files_of(catalogued["downloads"], catalogued["bob_data"]["studies"][0])[0])
    ds.StudyInstanceUID = "../../../../escape"
    hostile = tmp_path / "hostile.dcm"
    ds.save_as(hostile)
    response = post(storer, [("application/dicom", hostile.read_bytes())])
    assert response.status_code == 409 and "StudyInstanceUID" in response["Warning"]
    assert not any(p.name.startswith("escape") for p in settings.DOWNLOADS_DIR.parent.rglob("*"))


def test_a_part_header_with_control_characters_is_named_safely(storer):
    body = (b"--b\r\nContent-Type: text/\x7fevil\xff\x01\r\n\r\nx\r\n--b--\r\n")
    response = storer.generic("POST", "/dicomweb/studies", body,
                              content_type='multipart/related; type="application/dicom"; boundary=b')
    assert response.status_code == 409 and "part 1 is text/?evil??" in response["Warning"]


def test_stow_below_the_disk_floor_is_507_and_stores_nothing(storer, catalogued, settings):
    settings.MIN_FREE_GB = 10 ** 9  # more than any disk has
    data = files_of(catalogued["downloads"], catalogued["bob_data"]["studies"][0])[0].read_bytes()
    response = post(storer, [("application/dicom", data)])
    assert response.status_code == 507 and response["Retry-After"] == "60"
    assert "MIN_FREE_GB" in response.json()["detail"] and not Instance.objects.filter(source="stored").exists()


# Hostile multipart framing: the body is read as it arrives (apps/dicom/multipart_reader.py), so each of
# these must end in a clear answer after reading at most the body once, holding at most a read's worth.

RELATED = 'multipart/related; type="application/dicom"; boundary=b'


@pytest.fixture
def own_downloads(catalogued, settings, tmp_path):
    """A downloads folder of this test's own: what a STOW files or leaves is this test's doing."""
    settings.DOWNLOADS_DIR = tmp_path / "downloads"
    settings.DOWNLOADS_DIR.mkdir()
    return settings.DOWNLOADS_DIR


def raw_post(client, body: bytes, content_type: str = RELATED):
    return client.generic("POST", "/dicomweb/studies", body, content_type=content_type)


def nothing_filed_or_left(downloads) -> bool:
    left = [p for p in downloads.rglob("*") if not p.is_dir()]
    return not Instance.objects.filter(source="stored").exists() and not left


def read_whole(body: bytes, boundary: str, chunk_size: int) -> list[tuple[dict, bytes]]:
    return [(part.headers, b"".join(part.chunks()))
            for part in read_parts(io.BytesIO(body), boundary, len(body), chunk_size=chunk_size)]


def test_a_boundary_split_across_every_read_edge_is_still_found():
    boundary = "dicomweb-0123456789"
    contents = [b"\r\n-" * 7 + b"--dicomweb-012345678", b"", b"x" * 50 + b"\r\n--dicomweb-"]
    body = b"preamble\r\n" + b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + c + b"\r\n"
                                      for c in contents) + f"--{boundary}--\r\nepilogue".encode()
    for chunk_size in range(1, 40):  # every split of every delimiter, head and blank line across two reads
        assert [c for _, c in read_whole(body, boundary, chunk_size)] == contents, chunk_size


def test_a_boundary_straddling_the_views_one_megabyte_read_stores_the_instance(storer, catalogued, own_downloads):
    data = files_of(catalogued["downloads"], catalogued["bob_data"]["studies"][0])[0].read_bytes()
    head = b"--b\r\nContent-Type: application/dicom\r\n\r\n"
    for inside in (1, 3, 5):  # the first read ends 1, 3 or 5 bytes into the delimiter after the instance
        preamble = b"p" * (CHUNK_BYTES - 2 - inside - len(head) - len(data))
        body = preamble + b"\r\n" + head + data + b"\r\n--b--\r\n"
        assert body.index(b"\r\n--b--") == CHUNK_BYTES - inside
        response = raw_post(storer, body)
        assert response.status_code == 200, response.content
    stored = [p for p in own_downloads.rglob("*") if not p.is_dir()]
    assert [p.read_bytes() for p in stored] == [data]  # the same bytes three times: one file, no staging left


@pytest.mark.parametrize("rest, cause", [
    (b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b"x" * 3_000_000, "part 2 is not closed by the boundary"),
    (b"--b\r\nContent-Type: application/dicom\r\n\r\nx\r\n--b", "part 2 is not closed by the boundary"),
    (b"--b\r\nContent-Type: application/dicom\r\n\r\nx\r\n--bogus\r\n\r\n--b--", "boundary after part 2 is followed"),
    (b"--b\r\nX-Long: " + b"a" * 5_000_000 + b"\r\n\r\nx\r\n--b--", "part 2's headers run over 16384 bytes"),
    (b"--b\r\nContent-Type: application/dicom", "part 2 has no end of its headers"),
], ids=["unclosed", "no closing dashes", "boundary followed by text", "endless header", "headers cut"])
def test_a_malformed_body_is_400_naming_the_cause_and_files_nothing(storer, catalogued, own_downloads, rest, cause):
    good = files_of(catalogued["downloads"], catalogued["bob_data"]["studies"][0])[0].read_bytes()
    response = raw_post(storer, b"--b\r\nContent-Type: application/dicom\r\n\r\n" + good + b"\r\n" + rest)
    assert response.status_code == 400 and cause in response.json()["detail"], response.content
    assert nothing_filed_or_left(own_downloads)  # the good part before the fault included


def test_a_body_without_its_boundary_or_any_part_is_400(storer, own_downloads):
    for body, cause in [(b"no boundary anywhere " * 100_000, "does not contain the boundary"),
                        (b"--b--\r\n", "holds no part")]:
        response = raw_post(storer, body)
        assert response.status_code == 400 and cause in response.json()["detail"], response.content
    assert nothing_filed_or_left(own_downloads)


def test_millions_of_tiny_parts_are_refused_past_the_cap_and_file_nothing(storer, own_downloads):
    body = b"--b\r\n\r\nx\r\n" * 2_000_000 + b"--b--\r\n"
    response = raw_post(storer, body)
    assert response.status_code == 400 and f"more than {MAX_PARTS} parts" in response.json()["detail"]
    assert nothing_filed_or_left(own_downloads)


def test_a_part_with_no_headers_is_taken_as_dicom_and_checked_as_any(storer, catalogued, own_downloads):
    good = files_of(catalogued["downloads"], catalogued["bob_data"]["studies"][0])[0].read_bytes()
    response = raw_post(storer, b"--b\r\n\r\n" + good + b"\r\n--b\r\n\r\nnot dicom\r\n--b--\r\n")
    assert response.status_code == 202
    answer = json.loads(response.content)
    assert len(answer["00081199"]["Value"]) == 1 and answer["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert "part 2" in response["Warning"] and "not a DICOM file" in response["Warning"]


def test_wrong_content_types_are_refused_before_the_body_is_read(storer):
    for content_type, status, words in [
            ("multipart/form-data; boundary=b", 415, "multipart/related"),
            ('multipart/related; type="application/dicom+xml"; boundary=b', 415, "multipart/related"),
            ('multipart/related; type="application/dicom"', 400, "names no boundary"),
            ('multipart/related; type="application/dicom"; boundary=' + "b" * 201, 400, "names no boundary"),
            ("", 415, "multipart/related")]:
        response = raw_post(storer, b"--b\r\n\r\nx\r\n--b--\r\n", content_type)
        assert response.status_code == status and words in response.json()["detail"], content_type
    huge_type = b"--b\r\nContent-Type: text/" + b"x" * 15_000 + b"\r\n\r\nx\r\n--b--\r\n"
    response = raw_post(storer, huge_type)
    assert response.status_code == 409 and len(response["Warning"]) < 400  # the part's type, cut short


class CutConnection(io.BytesIO):
    def read(self, size=-1):
        if self.tell() >= 10:
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().read(min(size, 10))


def test_a_body_shorter_than_its_content_length_or_cut_off_is_a_body_error_not_a_disk_one():
    with pytest.raises(MultipartError, match="ended after 11 of its 1000 bytes"):
        list(read_parts(io.BytesIO(b"--b\r\n\r\nabcd"), "b", 1000))
    outcome = []
    with pytest.raises(MultipartError, match="could not be read past 10 of its 1000 bytes .Connection reset"):
        for part in read_parts(CutConnection(b"--b\r\n\r\n" + b"x" * 990), "b", 1000):
            try:  # as stow._stage writes a part: an OSError there would be our disk's
                outcome.extend(part.chunks())
            except OSError:
                outcome.append("blamed on the disk")
    assert "blamed on the disk" not in outcome


def test_the_no_content_length_answer(storer):
    response = storer.generic("POST", "/dicomweb/studies", b"--b\r\n\r\nx\r\n--b--\r\n", content_type=RELATED,
                              CONTENT_LENGTH="")
    assert response.status_code == 411 and "Content-Length" in response.json()["detail"]


def test_hostile_bodies_are_read_in_bounded_memory(tmp_path):
    hostile = {"unclosed": b"--b\r\n\r\n" + b"\r\n-" * 10_000_000,
               "headers without end": b"--b\r\n" + b"X: y\r\n" * 5_000_000,
               "no boundary": b"\r\n--c" * 8_000_000}
    for name, body in hostile.items():
        path = tmp_path / name
        path.write_bytes(body)
        del body
        tracemalloc.start()
        try:
            with open(path, "rb", buffering=0) as stream, pytest.raises(MultipartError):
                for part in read_parts(stream, "b", path.stat().st_size):
                    for _ in part.chunks():
                        pass
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * CHUNK_BYTES, (name, peak)


def hostile_instance(catalogued, name: str, ds) -> str:
    """`ds` written as alice's file `name` and catalogued; its WADO-RS URL."""
    target = catalogued["downloads"] / "LK" / "alice-hostile" / f"{name}.dcm"
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(target, enforce_file_format=True)
    assert catalog_files([target], source="retrieved", owner=catalogued["alice"]) == 1
    return (f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def test_hostile_frames_and_rendered_answer_the_reason_never_a_500(catalogued):
    """Frames located in the file (apps/dicom/frames.py): a header promising more frames than the pixel data
    holds, an offset table naming no fragment, pixel data cut short, frame numbers out of range."""
    import shutil
    import struct

    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate, generate_frames

    alice = token_client(catalogued["alice"])
    try:
        lying = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
        lying.NumberOfFrames = 11
        url = hostile_instance(catalogued, "lying", lying)
        for path in ("frames/1", "frames/1/rendered", "rendered", "thumbnail"):
            answer = alice.get(f"{url}/{path}")
            assert answer.status_code == 422, (path, answer.status_code)
            assert "11 frames" in answer.json()["detail"] or "less than expected" in answer.json()["detail"]
        rle = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
        table = bytearray(encapsulate(list(generate_frames(rle.PixelData, number_of_frames=10)), has_bot=True))
        struct.pack_into("<L", table, 12, 3)  # frame 2 said to start inside frame 1's fragment
        rle.PixelData = bytes(table)
        answer = alice.get(f"{hostile_instance(catalogued, 'table', rle)}/frames/2")
        assert answer.status_code == 422 and "no fragment starts" in answer.json()["detail"]
        good = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
        url = hostile_instance(catalogued, "good", good)
        for frames, status, words in (("0", 404, "frame 0 does not exist"), ("11", 404, "frame 11 does not exist"),
                                      ("2,99", 404, "frame 99"), ("1,,2", 400, "frame numbers")):
            answer = alice.get(f"{url}/frames/{frames}")
            assert answer.status_code == status and words in answer.json()["detail"], frames
        assert alice.get(f"{url}/frames/11/rendered").status_code == 400
        target = catalogued["downloads"] / "LK" / "alice-hostile" / "good.dcm"
        whole = target.read_bytes()
        target.write_bytes(whole[:-30000])  # cut after it was catalogued
        answer = alice.get(f"{url}/frames/1")
        assert answer.status_code == 422 and "truncated: the pixel data needs" in answer.json()["detail"]
        assert str(target) not in answer.json()["detail"]  # no server path in an answer
        target.write_bytes(whole)
        started = alice.get(f"{url}/frames/9,10")  # cut while its frames are being sent: the answer ends short
        length = int(started["Content-Length"])
        target.write_bytes(whole[:-10000])
        assert len(b"".join(started.streaming_content)) < length
    finally:
        shutil.rmtree(catalogued["downloads"] / "LK" / "alice-hostile", ignore_errors=True)


def test_a_giant_private_value_stays_out_of_the_metadata_unread(catalogued, tmp_path):
    """An instance carrying 32 MB of private data: metadata leaves that value out, never reading it (a Warning
    names the tag), and keeps a sequence longer than the limit (a multi-frame's per-frame groups) whole."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from apps.dicomweb.wado import LARGE_VALUE_BYTES

    alice = token_client(catalogued["alice"])
    ds = pydicom.dcmread(files_of(catalogued["downloads"], catalogued["alice_data"]["studies"][0])[0])
    study, sop = "1.2.826.0.1.3680043.8.498.777", "1.2.826.0.1.3680043.8.498.777.1"
    ds.StudyInstanceUID, ds.SOPInstanceUID, ds.file_meta.MediaStorageSOPInstanceUID = study, sop, sop
    block = ds.private_block(0x0029, "PORTAL TEST", create=True)
    giant = 32 * LARGE_VALUE_BYTES
    block.add_new(0x10, "OB", b"\x5a" * giant)
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [Dataset() for _ in range(3000)])  # >1 MB once each item holds a comment
    for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        item.ImageComments = f"frame {n} " + "x" * 400
    path = catalogued["downloads"] / "LK" / "alice" / "giant-private.dcm"
    ds.save_as(path, enforce_file_format=True)
    values = {f.attname: getattr(Instance.objects.filter(owner=catalogued["alice"]).first(), f.attname)
              for f in Instance._meta.concrete_fields if f.attname not in ("id", "path")}
    Instance.objects.create(**{**values, "path": str(path), "study_instance_uid": study, "sop_instance_uid": sop})
    try:
        tracemalloc.start()
        response = alice.get(f"/dicomweb/studies/{study}/metadata")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert response.status_code == 200
        (answer,) = json.loads(response.content)
        assert "00291010" not in answer and "00290010" in answer  # the value out, its private creator in
        assert len(answer["52009230"]["Value"]) == 3000 and answer["52009230"]["Value"][2999]["00204000"]["Value"][0].startswith("frame 2999")
        assert "(0029,1010) left out" in response["Warning"]
        assert peak < giant, peak  # the value (43 MB more in base64) was never read
    finally:
        path.unlink()
