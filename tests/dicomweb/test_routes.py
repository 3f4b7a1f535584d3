"""The routes against PS3.18: QIDO-RS matching and paging, status codes (empty = 204, a bad StudyDate =
400 naming it), media types and multipart boundaries of WADO-RS, metadata, frames, rendered images, and
one audit event per pixel-data request."""
import json

import pydicom
import pytest

from apps.audit.models import AuditEvent
from tests.dicomweb.conftest import files_of
from tests.dicomweb.helpers import parts_of, token_client

pytestmark = pytest.mark.django_db


def uids(response, tag="0020000D"):
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/dicom+json"
    return sorted(d[tag]["Value"][0] for d in json.loads(response.content))


@pytest.fixture
def alice(catalogued):
    return token_client(catalogued["alice"])


@pytest.fixture
def studies(catalogued):
    return catalogued["alice_data"]["studies"]


def test_study_matching(alice, studies):
    one, two = studies
    assert uids(alice.get("/dicomweb/studies")) == sorted([one["StudyInstanceUID"], two["StudyInstanceUID"]])
    assert uids(alice.get("/dicomweb/studies", {"PatientID": one["PatientID"]})) == [one["StudyInstanceUID"]]
    assert uids(alice.get("/dicomweb/studies", {"00100020": one["PatientID"]})) == [one["StudyInstanceUID"]]
    family = one["PatientName"].split("^")[0]
    assert uids(alice.get("/dicomweb/studies", {"PatientName": f"{family[:2].lower()}*"})) == [one["StudyInstanceUID"]]
    assert uids(alice.get("/dicomweb/studies", {"PatientID": "AAA0000?"})) == sorted(
        [one["StudyInstanceUID"], two["StudyInstanceUID"]])
    assert uids(alice.get("/dicomweb/studies", {"StudyDate": f"{one['StudyDate']}-{one['StudyDate']}"})) == [
        one["StudyInstanceUID"]]
    assert uids(alice.get("/dicomweb/studies", {"StudyDate": f"{two['StudyDate']}-"})) == [two["StudyInstanceUID"]]
    assert uids(alice.get("/dicomweb/studies", {"ModalitiesInStudy": "MR"})) == [two["StudyInstanceUID"]]
    assert uids(alice.get("/dicomweb/studies", {"ModalitiesInStudy": "CT,MR"})) == sorted(
        [one["StudyInstanceUID"], two["StudyInstanceUID"]])
    assert uids(alice.get("/dicomweb/studies", {"AccessionNumber": one["AccessionNumber"]})) == [
        one["StudyInstanceUID"]]
    listed = f"{one['StudyInstanceUID']},{two['StudyInstanceUID']}"
    assert len(uids(alice.get("/dicomweb/studies", {"StudyInstanceUID": listed}))) == 2
    assert uids(alice.get("/dicomweb/studies", {"fuzzymatching": "false", "PatientID": one["PatientID"]})) == [
        one["StudyInstanceUID"]]


def test_empty_results_are_204_and_bad_dates_400_naming_the_key(alice):
    empty = alice.get("/dicomweb/studies", {"PatientID": "NOBODY"})
    assert empty.status_code == 204 and empty.content == b""
    for bad in ("2024-13-45", "yesterday", "20240301-20240101"):
        response = alice.get("/dicomweb/studies", {"StudyDate": bad})
        assert response.status_code == 400 and "StudyDate" in response.json()["detail"], bad
    assert "limit" in alice.get("/dicomweb/studies", {"limit": "many"}).json()["detail"]
    assert "StudyInstanceUID" in alice.get("/dicomweb/studies", {"StudyInstanceUID": "1.2.x"}).json()["detail"]


def test_limit_offset_and_includefield(alice, studies):
    everything = uids(alice.get("/dicomweb/studies"))
    assert uids(alice.get("/dicomweb/studies", {"limit": 1})) == everything[:1]
    assert uids(alice.get("/dicomweb/studies", {"limit": 1, "offset": 1})) == everything[1:]
    assert alice.get("/dicomweb/studies", {"offset": 2}).status_code == 204
    series = json.loads(alice.get("/dicomweb/series", {"includefield": "PatientID,00081030"}).content)
    assert len(series) == 4 and all("00100020" in s and "00081030" in s for s in series)
    plain = json.loads(alice.get("/dicomweb/series").content)
    assert all("00100020" not in s for s in plain) and all(s["00201209"]["Value"] == [3] for s in plain)
    study = json.loads(alice.get("/dicomweb/studies", {"PatientID": studies[0]["PatientID"]}).content)[0]
    assert study["00080061"]["Value"] == ["CT"] and study["00201208"]["Value"] == [6]
    assert study["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{studies[0]['StudyInstanceUID']}")


def test_series_and_instance_searches(alice, studies):
    study = studies[0]["StudyInstanceUID"]
    series = uids(alice.get(f"/dicomweb/studies/{study}/series"), "0020000E")
    assert len(series) == 2
    assert len(uids(alice.get(f"/dicomweb/studies/{study}/instances"), "00080018")) == 6
    assert len(uids(alice.get(f"/dicomweb/studies/{study}/series/{series[0]}/instances"), "00080018")) == 3
    assert len(uids(alice.get("/dicomweb/instances"), "00080018")) == 12
    assert len(uids(alice.get("/dicomweb/instances", {"Modality": "MR"}), "00080018")) == 6
    assert uids(alice.get("/dicomweb/series", {"SeriesInstanceUID": series[1]}), "0020000E") == [series[1]]
    assert alice.get(f"/dicomweb/studies/{study}/series/1.2.3/instances").status_code == 204


def test_wado_study_is_multipart_of_the_stored_bytes(alice, catalogued, studies):
    study = studies[0]
    response = alice.get(f"/dicomweb/studies/{study['StudyInstanceUID']}")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    parts = parts_of(response)
    on_disk = sorted(p.read_bytes() for p in files_of(catalogued["downloads"], study))
    assert sorted(data for _, data in parts) == on_disk
    assert all(h["content-type"].startswith("application/dicom; transfer-syntax=1.2.840.10008.1.2") for h, _ in parts)


def test_wado_content_length_is_exact(alice, studies):
    response = alice.get(f"/dicomweb/studies/{studies[1]['StudyInstanceUID']}")
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body) and body.endswith(b"--\r\n")


def test_series_instance_metadata_frames_and_rendered(alice, catalogued, studies):
    study = studies[0]["StudyInstanceUID"]
    series = uids(alice.get(f"/dicomweb/studies/{study}/series"), "0020000E")[0]
    sop = uids(alice.get(f"/dicomweb/studies/{study}/series/{series}/instances"), "00080018")[0]
    base = f"/dicomweb/studies/{study}/series/{series}"
    assert len(parts_of(alice.get(base))) == 3
    (_, data), = parts_of(alice.get(f"{base}/instances/{sop}"))
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert ds.SOPInstanceUID == sop
    metadata = alice.get(f"{base}/metadata")
    assert metadata["Content-Type"] == "application/dicom+json"
    assert sorted(m["00080018"]["Value"][0] for m in json.loads(metadata.content)) == uids(
        alice.get(f"{base}/instances"), "00080018")
    assert len(json.loads(alice.get(f"/dicomweb/studies/{study}/metadata").content)) == 6
    (head, frame), = parts_of(alice.get(f"{base}/instances/{sop}/frames/1"))
    assert head["content-type"].startswith("application/octet-stream") and frame == ds.PixelData
    missing = alice.get(f"{base}/instances/{sop}/frames/2")
    assert missing.status_code == 404 and "frame 2" in missing.json()["detail"]
    jpeg = alice.get(f"{base}/instances/{sop}/rendered")
    assert jpeg["Content-Type"] == "image/jpeg" and jpeg.content[:3] == b"\xff\xd8\xff"
    png = alice.get(f"{base}/instances/{sop}/rendered", HTTP_ACCEPT="image/png")
    assert png["Content-Type"] == "image/png" and png.content[:4] == b"\x89PNG"
    narrow = alice.get(f"{base}/instances/{sop}/rendered", {"window": "40,10"}, HTTP_ACCEPT="image/png")
    wide = alice.get(f"{base}/instances/{sop}/rendered", {"window": "40,4000"}, HTTP_ACCEPT="image/png")
    assert narrow.content != wide.content  # window/level changes the picture
    bad = alice.get(f"{base}/instances/{sop}/rendered", {"window": "40"})
    assert bad.status_code == 400 and "window" in bad.json()["detail"]
    thumb = alice.get(f"{base}/instances/{sop}/thumbnail")
    assert thumb["Content-Type"] == "image/jpeg"
    assert alice.get(f"/dicomweb/studies/{study}/thumbnail")["Content-Type"] == "image/jpeg"
    assert alice.get(f"{base}/instances/{sop}/frames/1/rendered").content[:3] == b"\xff\xd8\xff"


def test_each_pixel_data_request_is_one_audit_event(alice, catalogued, studies):
    study = studies[0]["StudyInstanceUID"]
    AuditEvent.objects.all().delete()
    alice.get(f"/dicomweb/studies/{study}")
    alice.get(f"/dicomweb/studies/{study}/metadata")  # no pixel data: not audited
    series = uids(alice.get(f"/dicomweb/studies/{study}/series"), "0020000E")[0]
    alice.get(f"/dicomweb/studies/{study}/series/{series}/rendered")
    events = list(AuditEvent.objects.filter(action="dicomweb.retrieved").order_by("pk"))
    assert [(e.actor_id, e.target, e.details["resource"]) for e in events] == [
        (catalogued["alice"].pk, f"study:{study}", "instances"), (catalogued["alice"].pk, f"study:{study}", "rendered")]
    assert events[0].details["instances"] == 6


def test_a_session_works_as_well_as_a_token(client, catalogued, studies):
    client.force_login(catalogued["alice"])
    assert client.get("/dicomweb/studies").status_code == 200


def test_frames_of_a_compressed_multiframe_instance(alice, catalogued, tmp_path):
    import shutil

    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames

    from apps.catalog.filing import catalog_files

    source = get_testdata_file("SC_rgb_rle_2frame.dcm")  # RLE, two frames
    target = catalogued["downloads"] / "LK" / "alice-rle" / "rle.dcm"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    try:
        assert catalog_files([target], source="retrieved", owner=catalogued["alice"]) == 1
        ds = pydicom.dcmread(target)
        base = (f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}")
        parts = parts_of(alice.get(f"{base}/frames/2,1"))
        stored = list(generate_frames(ds.PixelData, number_of_frames=2))
        assert [data for _, data in parts] == [stored[1], stored[0]]
        assert all(h["content-type"] == "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5" for h, _ in parts)
        first = alice.get(f"{base}/frames/1/rendered", HTTP_ACCEPT="image/png").content
        second = alice.get(f"{base}/frames/2/rendered", HTTP_ACCEPT="image/png").content
        assert first[:4] == second[:4] == b"\x89PNG" and first != second
        assert alice.get(f"{base}/frames/3").status_code == 404
    finally:
        target.unlink()
