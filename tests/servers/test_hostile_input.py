"""Servers under careless or hostile input: no 500s. Hosts are names or addresses, timeouts are capped,
hosts that never resolve fail as DICOM errors, a capped C-FIND leaves its association usable, and the
interactive query says that it keeps wildcards on purpose."""
import pytest

from apps.dicom import dimse
from apps.dicom.peers import LocalAE
from apps.dicom.query import study_query
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


def test_a_capped_find_leaves_the_association_usable(orthanc, orthanc_dataset):
    with dimse.associate(orthanc.peer(), LocalAE(ae_title="CAPTEST"), purpose="query") as assoc:
        assert len(assoc.find("STUDY", study_query({"PatientID": "ORT*"}), limit=2)) == 3  # one more: "there are more"
        assert len(assoc.find("STUDY", study_query({"PatientID": "ORT*"}))) == len(orthanc_dataset["studies"])


def test_the_query_help_text_says_wildcards_widen_on_purpose(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    text = str(schema["paths"]["/api/servers/{name}/studies/"])
    assert "wildcards" in text and "case lists never do" in text


def test_a_dicomweb_url_typed_in_the_admin_without_a_scheme_is_taken_as_https(admin_client_logged_in, recwarn):
    form = {"name": "WEB", "ae_title": "X", "host": "127.0.0.1", "port": 104, "query_timeout": 30,
            "download_timeout": 120, "retries": 0, "retrieve_method": "c-move", "max_associations": 2,
            "dicomweb_url": "pacs.example/dicom-web", "dicomweb_auth": "none", "open_to_everyone": "on"}
    assert admin_client_logged_in.post("/admin/servers/dicomserver/add/", form).status_code == 302
    assert DicomServer.objects.get(name="WEB").dicomweb_url == "https://pacs.example/dicom-web"
    # Django 5's form field warned that its default (http) changes in Django 6: the admin says which it means.
    assert not [w for w in recwarn if "assume_scheme" in str(w.message)]
