"""A server's DICOMweb URL under attack: pointed at the portal's own machine or in the clear, or changed so
that the stored password or token would go to a listener of the changer's. Over the API and the admin."""
import http.server
import threading

import pytest

from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import DicomError
from apps.servers import storing
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db


def server_body(**overrides):
    return {"name": "WEB", "ae_title": "WEB", "host": "10.0.0.9", "port": 104, **overrides}


@pytest.mark.parametrize("url, said", [
    ("http://pacs.example/dicom-web", "must use https"), ("https://127.0.0.1:8042/dicom-web", "loopback"),
    ("https://localhost/dicom-web", "loopback"), ("https://169.254.169.254/latest", "link-local"),
    ("https://0.0.0.0/dicom-web", "unspecified"), ("https://[::1]/dicom-web", "loopback"),
])
def test_a_dicomweb_url_at_the_portals_own_machine_or_in_the_clear_is_refused(api, url, said):
    response = api.post("/api/servers/", server_body(dicomweb_url=url), format="json")
    assert response.status_code == 400 and said in " ".join(response.json()["dicomweb_url"])
    assert not DicomServer.objects.exists()


def test_private_https_and_trusted_hosts_are_allowed(api, settings):
    assert api.post("/api/servers/", server_body(dicomweb_url="https://10.0.0.9/dicom-web"),
                    format="json").status_code == 201
    settings.TRUSTED_HTTP_HOSTS = ["127.0.0.1:8042"]
    assert api.patch("/api/servers/WEB/", {"dicomweb_url": "http://127.0.0.1:8042/dicom-web"},
                     format="json").status_code == 200
    refused = api.patch("/api/servers/WEB/", {"dicomweb_url": "http://127.0.0.1:8043/dicom-web"}, format="json")
    assert refused.status_code == 400 and "127.0.0.1:8043" in " ".join(refused.json()["dicomweb_url"])


def bearer_server() -> DicomServer:
    return DicomServer.objects.create(name="WEB", ae_title="WEB", host="10.0.0.9", port=104,
                                      dicomweb_url="https://pacs.example/dicom-web", dicomweb_auth="bearer",
                                      dicomweb_secret="pacs-token")


def test_a_changed_dicomweb_url_drops_the_secret_unless_the_request_gives_one(api):
    server = bearer_server()
    shown = api.get("/api/servers/WEB/")
    assert "pacs-token" not in shown.content.decode() and "dicomweb_secret" not in shown.json()
    assert api.patch("/api/servers/WEB/", {"description": "same URL"}, format="json").status_code == 200
    server.refresh_from_db()
    assert server.dicomweb_secret == "pacs-token"
    assert api.patch("/api/servers/WEB/", {"dicomweb_url": "https://evil.example/dicom-web"},
                     format="json").status_code == 200
    server.refresh_from_db()
    assert server.dicomweb_url == "https://evil.example/dicom-web" and server.dicomweb_secret == ""
    assert api.patch("/api/servers/WEB/", {"dicomweb_url": "https://pacs2.example/dicom-web",
                                           "dicomweb_secret": "new-token"}, format="json").status_code == 200
    server.refresh_from_db()
    assert server.dicomweb_secret == "new-token"


def admin_form(server: DicomServer, **changes) -> dict:
    form = {"name": server.name, "ae_title": server.ae_title, "host": server.host, "port": server.port,
            "description": "", "query_timeout": 30, "download_timeout": 120, "retries": 2,
            "retrieve_method": "c-move", "max_associations": 2, "tls_ca_file": "", "tls_cert_file": "",
            "tls_key_file": "", "dicomweb_url": server.dicomweb_url, "dicomweb_auth": server.dicomweb_auth,
            "dicomweb_username": "", "dicomweb_secret": "", "open_to_everyone": "on"}
    return {**form, **changes}


def test_the_admin_never_shows_the_secret_and_a_changed_url_needs_it_again(admin_client_logged_in):
    client, server = admin_client_logged_in, bearer_server()
    change = f"/admin/servers/dicomserver/{server.pk}/change/"
    assert "pacs-token" not in client.get(change).content.decode()
    kept = client.post(change, admin_form(server, description="x"))
    assert kept.status_code == 302, kept.content.decode()[:3000]
    server.refresh_from_db()
    assert server.dicomweb_secret == "pacs-token"
    moved = client.post(change, admin_form(server, dicomweb_url="https://evil.example/dicom-web"))
    assert moved.status_code == 200 and "a changed DICOMweb URL drops the stored one" in moved.content.decode()
    server.refresh_from_db()
    assert (server.dicomweb_url, server.dicomweb_secret) == ("https://pacs.example/dicom-web", "pacs-token")
    loopback = client.post(change, admin_form(server, dicomweb_url="http://127.0.0.1:8042/dicom-web",
                                              dicomweb_secret="t"))
    assert loopback.status_code == 200 and "must use https" in loopback.content.decode()
    server.refresh_from_db()
    assert server.dicomweb_url == "https://pacs.example/dicom-web"


def test_a_dicomweb_url_that_stopped_being_allowed_gets_nothing_at_send_time(settings, tmp_path):
    """Checked when saved and again when sending: a name that now resolves to this machine, or a host
    taken off TRUSTED_HTTP_HOSTS, receives neither the images nor the stored token."""
    seen = []

    class Listener(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(500)
            self.end_headers()

    listener = http.server.HTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    port = listener.server_address[1]
    settings.TRUSTED_HTTP_HOSTS = [f"127.0.0.1:{port}"]
    server = DicomServer.objects.create(name="WEB", ae_title="WEB", host="10.0.0.9", port=104,
                                        dicomweb_url=f"http://127.0.0.1:{port}/dicom-web", dicomweb_auth="bearer",
                                        dicomweb_secret="pacs-token")
    write_dataset(tmp_path, patients=1, studies=1, series=1, instances=1, rows=16, cols=16, seed=3, id_prefix="URL")
    settings.TRUSTED_HTTP_HOSTS = []
    try:
        with pytest.raises(DicomError, match="WEB: .* must use https.* Nothing was sent"):
            storing.store(server, sorted(tmp_path.rglob("*.dcm")), method=storing.STOW_RS)
    finally:
        listener.shutdown()
    assert seen == [], "the listener got no request, so no token"
