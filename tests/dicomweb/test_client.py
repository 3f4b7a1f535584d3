"""dicomweb-client (PyPI, written by others) through every route of /dicomweb/ on the live server."""
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.dicomweb.conftest import files_of

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(live_server, user) -> DICOMwebClient:
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Token {user.token}"})


def test_search_studies_finds_the_users_own(live_server, catalogued):
    client = client_for(live_server, catalogued["alice"])
    studies = client.search_for_studies()
    uids = sorted(s["0020000D"]["Value"][0] for s in studies)
    assert uids == sorted(s["StudyInstanceUID"] for s in catalogued["alice_data"]["studies"])
    first = next(s for s in studies if s["00100020"]["Value"][0] == "AAA00001")
    assert first["00201208"]["Value"] == [6] and first["00201206"]["Value"] == [2]
    assert first["00100010"]["Value"][0]["Alphabetic"].startswith(catalogued["alice_data"]["studies"][0]["PatientName"][:3])
    assert client.search_for_studies(search_filters={"PatientID": "AAA00002"})[0]["00100020"]["Value"] == ["AAA00002"]


def test_retrieve_study_gives_the_files_bytes(live_server, catalogued):
    client = client_for(live_server, catalogued["alice"])
    study = catalogued["alice_data"]["studies"][0]
    got = client.retrieve_study(study["StudyInstanceUID"])
    on_disk = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in files_of(catalogued["downloads"], study)}
    assert len(got) == len(on_disk) == 6
    for ds in got:
        assert ds.SOPInstanceUID in on_disk


def test_metadata_series_and_instance(live_server, catalogued):
    client = client_for(live_server, catalogued["alice"])
    study = catalogued["alice_data"]["studies"][0]
    series = client.search_for_series(study["StudyInstanceUID"])
    assert len(series) == 2
    se = series[0]["0020000E"]["Value"][0]
    instances = client.search_for_instances(study["StudyInstanceUID"], se)
    assert len(instances) == 3
    sop = instances[0]["00080018"]["Value"][0]
    meta = client.retrieve_series_metadata(study["StudyInstanceUID"], se)
    assert len(meta) == 3 and all("7FE00010" not in m for m in meta)
    one = client.retrieve_instance(study["StudyInstanceUID"], se, sop)
    assert one.SOPInstanceUID == sop
    frames = client.retrieve_instance_frames(study["StudyInstanceUID"], se, sop, frame_numbers=[1])
    assert len(frames[0]) == one.Rows * one.Columns * one.BitsAllocated // 8
    jpeg = client.retrieve_instance_rendered(study["StudyInstanceUID"], se, sop, media_types=("image/jpeg",))
    assert jpeg[:3] == b"\xff\xd8\xff"


def test_every_other_route_through_the_client(live_server, catalogued):
    from django.contrib.auth.models import Permission

    client = client_for(live_server, catalogued["alice"])
    study = catalogued["alice_data"]["studies"][1]
    uid = study["StudyInstanceUID"]
    assert len(client.search_for_series(search_filters={"Modality": "MR"})) == 2  # the flat series search
    flat = client.search_for_instances(search_filters={"StudyInstanceUID": uid})
    assert len(flat) == 6
    assert {m["00080018"]["Value"][0] for m in client.retrieve_study_metadata(uid)} == {
        i["00080018"]["Value"][0] for i in flat}
    series = flat[0]["0020000E"]["Value"][0]
    assert {ds.SeriesInstanceUID for ds in client.retrieve_series(uid, series)} == {series}
    assert sum(1 for _ in client.iter_series(uid, series)) == 3
    assert sum(1 for _ in client.iter_study(uid)) == 6
    sop = next(i["00080018"]["Value"][0] for i in flat if i["0020000E"]["Value"][0] == series)
    assert client.retrieve_instance_metadata(uid, series, sop)["00080018"]["Value"] == [sop]
    assert client.retrieve_series_rendered(uid, series, media_types=("image/png",))[:4] == b"\x89PNG"
    assert client.retrieve_instance_frames_rendered(uid, series, sop, frame_numbers=[1])[:3] == b"\xff\xd8\xff"
    assert len(list(client.iter_instance_frames(uid, series, sop, frame_numbers=[1]))) == 1

    bob = catalogued["bob"]
    bob.user_permissions.add(Permission.objects.get(codename="store_dicomweb"))
    instances = client.retrieve_series(uid, series)
    answer = client_for(live_server, bob).store_instances(instances)
    assert len(answer.ReferencedSOPSequence) == 3 and "FailedSOPSequence" not in answer
    assert len(client_for(live_server, bob).search_for_instances(uid)) == 3  # bob's own copies now
