"""GET/PUT /api/settings (staff only, partial, checked, audited), /api/settings/info, POST /api/pacs/echo
against the real Orthanc (C-ECHO and DICOMweb), and the admin's settings page."""
import pytest
from auditlog.models import LogEntry

from apps.audit.models import AuditEvent
from apps.photos.models import PhotoSettings
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db

DEFAULTS = {"backend": "cstore", "destination": None, "localModality": "OT", "localResizeMax": 1024,
            "localTransferSyntax": "1.2.840.10008.1.2", "localCharset": "ISO_IR 192",
            "includePatientInfoExceptId": True, "includeExamDescription": True, "keepFilesOnSuccess": False,
            "maxUploadMb": 20, "themeDark": True, "timeoutSeconds": 30, "dicomwebVerifyTls": True}


def test_settings_start_with_the_documented_defaults(api, photo_settings):
    for url in ("/api/settings", "/api/settings/"):
        response = api.get(url)
        assert response.status_code == 200 and response.json() == {"settings": DEFAULTS}
    assert api.get("/api/settings/info").json() == {"pacsBackend": "cstore", "callingAET": "PACSPORTAL"}


def test_staff_change_settings_partially_and_it_is_audited(staff_api, photo_settings):
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    response = staff_api.put("/api/settings", {"settings": {"destination": "LK", "localModality": "XC",
                                                            "themeDark": False}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["settings"] == {**DEFAULTS, "destination": "LK", "localModality": "XC", "themeDark": False}
    fresh = PhotoSettings.load()
    assert (fresh.destination.name, fresh.local_modality, fresh.theme_dark) == ("LK", "XC", False)
    event = AuditEvent.objects.get(action="photos.settings_changed")
    assert event.actor == staff_api.user and event.details["changed"] == ["destination", "localModality", "themeDark"]
    assert LogEntry.objects.get_for_object(fresh).exists()  # the model change itself, field by field


def test_a_user_who_is_not_staff_cannot_change_settings(api, photo_settings):
    response = api.put("/api/settings", {"settings": {"backend": "dicomweb"}}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    assert PhotoSettings.load().backend == "cstore"


@pytest.mark.parametrize("change, problem", [
    ({"backend": "ftp"}, "backend:"),
    ({"localResizeMax": 10}, "localResizeMax:"),
    ({"localModality": "o t!"}, "localModality:"),
    ({"localTransferSyntax": "1.2.3"}, "localTransferSyntax:"),
    ({"maxUploadMb": 0}, "maxUploadMb:"),
    ({"timeoutSeconds": 1000}, "timeoutSeconds:"),
    ({"destination": "NOWHERE"}, "destination:"),
    ({"colour": "red"}, "Unknown setting(s): colour"),
])
def test_bad_settings_are_refused_naming_the_key(staff_api, photo_settings, change, problem):
    response = staff_api.put("/api/settings", {"settings": change}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"
    assert problem in response.json()["message"]
    assert api_settings(staff_api) == DEFAULTS


def test_dicomweb_needs_a_destination_with_a_dicomweb_url(staff_api, photo_settings):
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    response = staff_api.put("/api/settings", {"settings": {"backend": "dicomweb", "destination": "LK"}},
                             format="json")
    assert response.status_code == 400 and "destination: LK has no DICOMweb URL" in response.json()["message"]
    assert api_settings(staff_api)["backend"] == "cstore"


def api_settings(client) -> dict:
    return client.get("/api/settings").json()["settings"]


def test_the_admin_edits_the_one_settings_row(admin_client_logged_in, photo_settings):
    listing = admin_client_logged_in.get("/admin/photos/photosettings/")
    assert listing.status_code == 302 and listing["Location"].endswith("/admin/photos/photosettings/1/change/")
    page = admin_client_logged_in.get(listing["Location"])
    assert page.status_code == 200 and b"local_resize_max" in page.content
    assert admin_client_logged_in.get("/admin/photos/photosettings/add/").status_code == 403


@pytest.mark.orthanc
def test_echo_the_destination_by_c_echo_and_by_dicomweb(api, staff_api, destination):
    for url in ("/api/pacs/echo", "/api/pacs/echo/"):
        response = api.post(url, {}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "success" and response.json()["backend"] == "cstore"
    staff_api.put("/api/settings", {"settings": {"backend": "dicomweb"}}, format="json")
    response = api.post("/api/pacs/echo", format="json")
    assert response.status_code == 200 and response.json()["pacs"]["url"] == destination.dicomweb_url


@pytest.mark.orthanc
def test_echo_with_the_seed_body_must_name_a_configured_server(api, destination):
    seed_body = {"calledAET": destination.ae_title, "host": "127.0.0.1", "port": destination.port,
                 "callingAET": "PHOTO_PACS"}
    response = api.post("/api/pacs/echo", seed_body, format="json")
    assert response.status_code == 200 and response.json()["pacs"]["server"] == "PHOTOPACS"
    assert response.json()["callingAET"] == "PACSPORTAL"  # the portal calls as itself
    elsewhere = api.post("/api/pacs/echo", {**seed_body, "host": "127.0.0.2", "port": 104}, format="json")
    assert elsewhere.status_code == 400 and "only talks to servers an administrator has added" in elsewhere.json()["message"]


def test_echo_of_a_dead_port_is_504(api, photo_settings, free_port):
    server = DicomServer.objects.create(name="DEAD", ae_title="DEAD", host="127.0.0.1", port=free_port)
    response = api.post("/api/pacs/echo", {"server": server.name}, format="json")
    assert response.status_code == 504 and response.json()["code"] == "PACS_TIMEOUT"
    assert AuditEvent.objects.filter(action="server.echo", details__ok=False).exists()
