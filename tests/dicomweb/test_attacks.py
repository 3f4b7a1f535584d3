"""Attacks on /dicomweb/ from outside: another account's token searching and guessing UIDs, catalog rows
naming files outside the data folders, hostile STOW bodies (non-DICOM, oversize, path-like UIDs), no login."""
import json
import os

import pydicom
import pytest
from django.contrib.auth.models import Permission

from apps.catalog.filing import catalog_files
from apps.catalog.models import Instance
from apps.delivery.deliver import clear_files
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
    for url in ["/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances", *urls]:
        response = anonymous.get(url)
        assert response.status_code == 401 and response.json()["detail"], url
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert wrong.get("/dicomweb/studies").status_code == 401


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
