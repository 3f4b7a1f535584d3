"""/api/servers/: CRUD by name, clear 400/404 for bad input, echo and study query against real Orthanc."""
import pytest

from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


def server_body(**overrides):
    body = {"name": "LK", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242, "description": "Main PACS"}
    body.update(overrides)
    return body


def test_it_creates_reads_updates_and_deletes_a_server_by_name(api):
    created = api.post("/api/servers/", server_body(), format="json")
    assert created.status_code == 201, created.content
    assert created.json()["query_timeout"] == 30 and created.json()["download_timeout"] == 120
    assert created.json()["retrieve_method"] == "c-move"

    assert [s["name"] for s in api.get("/api/servers/").json()] == ["LK"]
    assert api.get("/api/servers/LK/").json()["ae_title"] == "ORTHANC"

    patched = api.patch("/api/servers/LK/", {"retrieve_method": "c-get", "max_associations": 4}, format="json")
    assert patched.status_code == 200
    server = DicomServer.objects.get(name="LK")
    assert (server.retrieve_method, server.max_associations) == ("c-get", 4)

    assert api.delete("/api/servers/LK/").status_code == 204
    assert not DicomServer.objects.exists()


@pytest.mark.parametrize("field,value,words", [
    ("port", 0, "greater than or equal to 1"),
    ("port", 70000, "less than or equal to 65535"),
    ("ae_title", "A" * 17, "at most 16"),
    ("ae_title", "BAD\\AE", "contains '\\\\'"),
    ("ae_title", "   ", "may not be blank"),
    ("name", "../etc", "letters, digits"),
    ("retrieve_method", "c-teleport", "not a valid choice"),
    ("host", "0.0.0.0", "is the unspecified address"),
    ("host", "::", "is the unspecified address"),
    ("host", "0", "is the unspecified address"),  # 0.0.0.0 as the C library reads it
    ("host", "255.255.255.255", "is a broadcast address"),
    ("host", "4294967295", "is a broadcast address"),
    ("host", "224.0.0.1", "is a multicast address"),
    ("host", "ff02::1", "is a multicast address"),
    ("host", "240.0.0.1", "is a reserved address"),
    ("host", "::ffff:0.0.0.0", "is the unspecified address"),
])
def test_it_refuses_bad_server_fields_with_a_clear_400(api, field, value, words):
    response = api.post("/api/servers/", server_body(**{field: value}), format="json")
    assert response.status_code == 400
    messages = " ".join(response.json()[field])
    assert words in messages, messages
    assert not DicomServer.objects.exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "::1", "pacs.hospital.local", "PACS-2"])
def test_it_takes_unicast_addresses_and_host_names(api, host):
    assert api.post("/api/servers/", server_body(host=host), format="json").status_code == 201


def test_it_refuses_a_duplicate_name(api):
    assert api.post("/api/servers/", server_body(), format="json").status_code == 201
    response = api.post("/api/servers/", server_body(ae_title="OTHER"), format="json")
    assert response.status_code == 400 and "name" in response.json()


@pytest.mark.parametrize("method,path", [
    ("get", "/api/servers/NOPE/"), ("patch", "/api/servers/NOPE/"), ("delete", "/api/servers/NOPE/"),
    ("post", "/api/servers/NOPE/echo/"), ("get", "/api/servers/NOPE/studies"),
])
def test_it_answers_404_for_an_unknown_server(api, method, path):
    response = getattr(api, method)(path, {}, format="json") if method != "get" else api.get(path)
    assert response.status_code == 404


def test_echo_reaches_orthanc(api, orthanc):
    peer = orthanc.peer()
    DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port)
    body = api.post("/api/servers/ORTH/echo/").json()
    assert body["ok"] is True and body["error"] is None and body["elapsed_ms"] > 0


def test_echo_to_a_closed_port_reports_the_failure(api, free_port):
    DicomServer.objects.create(name="DOWN", ae_title="NOBODY", host="127.0.0.1", port=free_port, query_timeout=3)
    body = api.post("/api/servers/DOWN/echo/").json()
    assert body["ok"] is False and body["elapsed_ms"] is None
    assert str(free_port) in body["error"]


def test_study_query_finds_exactly_the_patients_studies(api, orthanc, orthanc_dataset):
    peer = orthanc.peer()
    DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port)
    patient = orthanc_dataset["studies"][0]["PatientID"]
    expected = {s["StudyInstanceUID"] for s in orthanc_dataset["studies"] if s["PatientID"] == patient}

    body = api.get("/api/servers/ORTH/studies", {"PatientID": patient}).json()
    assert {s["StudyInstanceUID"] for s in body["studies"]} == expected
    assert body["count"] == len(expected)
    first = body["studies"][0]
    known = next(s for s in orthanc_dataset["studies"] if s["StudyInstanceUID"] == first["StudyInstanceUID"])
    assert first["PatientID"] == patient
    assert first["NumberOfStudyRelatedInstances"] == sum(series["Instances"] for series in known["Series"]) == 5


def test_study_query_by_date_range_and_modality(api, orthanc, orthanc_dataset):
    peer = orthanc.peer()
    DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port)
    study = orthanc_dataset["studies"][1]
    in_range = {s["StudyInstanceUID"] for s in orthanc_dataset["studies"]
                if s["StudyDate"] == study["StudyDate"] and s["Modality"] == study["Modality"]}

    body = api.get("/api/servers/ORTH/studies",
                   {"StudyDate": f"{study['StudyDate']}-{study['StudyDate']}", "Modality": study["Modality"]}).json()
    assert {s["StudyInstanceUID"] for s in body["studies"]} == in_range
    assert all(study["Modality"] in s["ModalitiesInStudy"] for s in body["studies"])


@pytest.mark.parametrize("date", ["2023-13-01", "20230230", "2023", "20230101-20221231", "yesterday"])
def test_study_query_refuses_an_impossible_date(api, date):
    DicomServer.objects.create(name="ANY", ae_title="ANY", host="127.0.0.1", port=104)
    response = api.get("/api/servers/ANY/studies", {"StudyDate": date})
    assert response.status_code == 400
    assert "StudyDate" in response.json()["error"]


def test_study_query_against_an_unreachable_server_is_a_502(api, free_port):
    DicomServer.objects.create(name="DOWN", ae_title="NOBODY", host="127.0.0.1", port=free_port, query_timeout=3)
    response = api.get("/api/servers/DOWN/studies", {"PatientID": "X"})
    assert response.status_code == 502
    assert "DOWN" in response.json()["error"]


def test_a_server_that_past_jobs_name_is_not_deleted_but_explained(api, user):
    from apps.retrieval.models import RetrievalItem, RetrievalJob

    server = DicomServer.objects.create(name="ORTH", ae_title="ORTH", host="127.0.0.1", port=4242)
    job = RetrievalJob.objects.create(created_by=user)
    RetrievalItem.objects.create(job=job, line=2, patient_id="P1", dicom_server=server, server_name="ORTH")
    refused = api.delete("/api/servers/ORTH/")
    assert refused.status_code == 409
    assert refused.json()["error"].startswith("Server 'ORTH' is named by 1 retrieval row(s) of past jobs")
    assert DicomServer.objects.filter(name="ORTH").exists()
