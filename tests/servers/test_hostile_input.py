"""Servers under careless or hostile input: no 500s. Hosts are names or addresses, timeouts are capped,
a server that jobs refer to is not deleted (409 with why), hosts that never resolve fail as DICOM errors,
and the interactive query keeps its wildcards but caps how many studies it shows."""
import pytest

from apps.dicom import dimse
from apps.dicom.peers import LocalAE
from apps.dicom.query import study_query
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


def body(**overrides):
    return {"name": "LK", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242, **overrides}


@pytest.mark.parametrize("host, words", [
    ("http://x", "has a scheme"),
    ("a b;rm -rf /", "without spaces"),
    ("pacs;reboot", "not a host name or IP address"),
    ("pacs:104", "not a host name or IP address"),
    ("-pacs", "not a host name or IP address"),
])
def test_a_host_that_is_not_a_name_or_address_is_a_clear_400(api, host, words):
    response = api.post("/api/servers/", body(host=host), format="json")
    assert response.status_code == 400
    assert words in " ".join(response.json()["host"])
    assert not DicomServer.objects.exists()


@pytest.mark.parametrize("host", ["pacs.hospital.local", "PACS-1", "10.0.0.5", "::1", "localhost."])
def test_names_and_addresses_are_accepted(api, host):
    assert api.post("/api/servers/", body(host=host), format="json").status_code == 201


@pytest.mark.parametrize("field, value, limit", [
    ("query_timeout", 99999999999, "3600"), ("download_timeout", 99999999999, "86400"), ("query_timeout", 3601, "3600")])
def test_timeouts_are_capped_at_creation(api, field, value, limit):
    response = api.post("/api/servers/", body(**{field: value}), format="json")
    assert response.status_code == 400
    assert f"less than or equal to {limit}" in " ".join(response.json()[field])


def test_a_timeout_saved_before_the_cap_existed_is_clamped_at_the_dicom_boundary():
    server = DicomServer.objects.create(name="OLD", ae_title="X", host="127.0.0.1", port=104,
                                        query_timeout=99999999999, download_timeout=99999999999)
    peer = server.as_peer()
    assert (peer.query_timeout, peer.retrieve_timeout) == (3600.0, 86400.0)


@pytest.mark.parametrize("host", ["http://x", "a b;rm -rf /", "no-such-host.invalid"])
def test_echo_and_query_to_a_host_that_does_not_resolve_answer_clearly(api, host):
    DicomServer.objects.create(name="BAD", ae_title="BAD", host=host, port=104, query_timeout=3)  # saved before checks
    echo = api.post("/api/servers/BAD/echo/")
    assert echo.status_code == 200 and echo.json()["ok"] is False and "BAD" in echo.json()["error"]
    query = api.get("/api/servers/BAD/studies", {"PatientID": "X"})
    assert query.status_code == 502 and "BAD" in query.json()["error"]


def test_deleting_a_server_that_jobs_refer_to_is_a_409_saying_why(api):
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    job = RetrievalJob.objects.create(source_name="c.csv")
    job.items.create(line=1, patient_id="P", dicom_server=server, server_name="LK")
    response = api.delete("/api/servers/LK/")
    assert response.status_code == 409
    assert "cannot be deleted: 1 retrieval items refer to it" in response.json()["error"]
    assert DicomServer.objects.filter(name="LK").exists()


def test_the_interactive_query_keeps_wildcards_and_caps_its_results(api, orthanc, orthanc_dataset, settings):
    settings.QUERY_MAX_RESULTS = 4
    peer = orthanc.peer()
    DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port)
    assert len(orthanc_dataset["studies"]) > 4
    capped = api.get("/api/servers/ORTH/studies", {"PatientID": "ORT*"}).json()
    assert capped["count"] == 4 and len(capped["studies"]) == 4 and capped["truncated"] is True
    assert capped["message"].startswith("More results than shown: the first 4 studies")
    settings.QUERY_MAX_RESULTS = 500
    everything = api.get("/api/servers/ORTH/studies", {"PatientID": "ORT*"}).json()
    assert everything["count"] == len(orthanc_dataset["studies"]) and everything["truncated"] is False
    assert "message" not in everything


def test_a_capped_find_leaves_the_association_usable(orthanc, orthanc_dataset):
    with dimse.associate(orthanc.peer(), LocalAE(ae_title="CAPTEST"), purpose="query") as assoc:
        assert len(assoc.find("STUDY", study_query({"PatientID": "ORT*"}), limit=2)) == 2
        assert len(assoc.find("STUDY", study_query({"PatientID": "ORT*"}))) == len(orthanc_dataset["studies"])


def test_the_query_help_text_says_wildcards_widen_on_purpose(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    text = str(schema["paths"]["/api/servers/{name}/studies/"])
    assert "wildcards" in text and "case lists never do" in text
