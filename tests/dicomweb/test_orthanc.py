"""A real Orthanc with its DICOMweb plugin, configured with the portal as a remote DICOMweb server (its
DicomWeb.Servers entry, the API token as an HTTP header), lists the portal's studies and pulls one into
its own storage: the instances it stores are byte-identical to the portal's files."""
import pytest

from tests.dicomweb.conftest import files_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_orthanc_lists_and_pulls_a_study_from_the_portal(live_server, catalogued, empty_orthanc):
    orthanc = empty_orthanc
    orthanc.rest("PUT", "/dicom-web/servers/portal", json={
        "Url": f"{live_server.url}/dicomweb/", "HttpHeaders": {"Authorization": f"Token {catalogued['alice'].token}"}})
    listed = orthanc.rest("POST", "/dicom-web/servers/portal/qido", json={"Uri": "/studies"}).json()
    wanted = sorted(s["StudyInstanceUID"] for s in catalogued["alice_data"]["studies"])
    # Orthanc answers in its own shape (one value as a string), having parsed the portal's DICOM JSON
    assert sorted(s["0020000D"]["Value"] for s in listed) == wanted  # alice's, not bob's
    assert {s["00100020"]["Value"] for s in listed} == {"AAA00001", "AAA00002"}

    study = catalogued["alice_data"]["studies"][0]
    orthanc.rest("POST", "/dicom-web/servers/portal/retrieve",
                 json={"Resources": [{"Study": study["StudyInstanceUID"]}]}, timeout=60)
    ours = {p.read_bytes() for p in files_of(catalogued["downloads"], study)}
    stored = orthanc.rest("GET", "/instances").json()
    theirs = {orthanc.rest("GET", f"/instances/{i}/file").content for i in stored}
    assert len(ours) == 6 and theirs == ours


def test_orthanc_without_the_token_gets_nothing(live_server, catalogued, empty_orthanc):
    empty_orthanc.rest("PUT", "/dicom-web/servers/stranger", json={"Url": f"{live_server.url}/dicomweb/"})
    response = empty_orthanc._http.post("/dicom-web/servers/stranger/qido", json={"Uri": "/studies"})
    assert response.status_code >= 400 and empty_orthanc.rest("GET", "/instances").json() == []
