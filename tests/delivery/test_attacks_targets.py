"""Where delivery targets send, under attack: a user who may change a target pointing it (and its token)
elsewhere, a target URL aimed at the portal's own machine or in the clear, receiving ends that are not
portals or answer nonsense, a server a target still names. Each asserts nothing was sent where it must not
go and that the answer names the cause."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.delivery.tus_client import TusError, TusSender
from apps.servers.models import DicomServer
from tests.delivery.conftest import run_released, sha1_tree

pytestmark = pytest.mark.django_db(transaction=True)

# --- item 5: where targets send ------------------------------------------------------------------------
def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def staff(db, django_user_model):
    boss = django_user_model.objects.create_user(username="boss", password="boss-pass-123", is_staff=True)
    boss.user_permissions.add(*Permission.objects.filter(content_type__app_label="delivery"))
    return boss


def test_creating_a_target_is_for_staff_and_a_changer_cannot_redirect_one(user, staff):
    target = DeliveryTarget.objects.create(name="FAR", kind="portal", url="https://far.example", token="far-token")
    tech = api_for(user)  # every delivery permission, not staff
    created = tech.post("/api/delivery-targets/", {"name": "MINE", "kind": "portal", "url": "https://evil.example",
                                                   "token": "x"}, format="json")
    assert created.status_code == 403 and "staff" in created.json()["detail"]
    moved = tech.patch("/api/delivery-targets/FAR/", {"url": "https://evil.example", "token": "mine"}, format="json")
    assert moved.status_code == 403 and "url" in moved.json()["detail"]
    described = tech.patch("/api/delivery-targets/FAR/", {"description": "site B"}, format="json")
    assert described.status_code == 200
    target.refresh_from_db()
    assert (target.url, target.token, target.description) == ("https://far.example", "far-token", "site B")
    assert api_for(staff).post("/api/delivery-targets/", {"name": "NEAR", "kind": "portal", "token": "t",
                                                          "url": "https://10.1.2.3"}, format="json").status_code == 201


def test_a_changed_url_never_takes_the_stored_token_along(staff):
    target = DeliveryTarget.objects.create(name="FAR", kind="portal", url="https://far.example", token="far-token")
    client = api_for(staff)
    for url in ("https://evil.example", "https://far.example:8443", "https://far.example/other", "http://far.example"):
        moved = client.patch("/api/delivery-targets/FAR/", {"url": url}, format="json")
        assert moved.status_code == 400 and "token" in moved.json(), (url, moved.json())
        target.refresh_from_db()
        assert (target.url, target.token) == ("https://far.example", "far-token")
    same = client.patch("/api/delivery-targets/FAR/", {"url": "https://FAR.example/"}, format="json")
    assert same.status_code == 200 and DeliveryTarget.objects.get().token == "far-token"
    moved = client.patch("/api/delivery-targets/FAR/", {"url": "https://near.example", "token": "near-token"},
                         format="json")
    assert moved.status_code == 200 and DeliveryTarget.objects.get().token == "near-token"


def test_the_admin_drops_the_token_when_the_url_changes(client, staff):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=staff.pk).update(is_superuser=True)
    client.force_login(staff)
    target = DeliveryTarget.objects.create(name="FAR", kind="portal", url="https://far.example", token="far-token")
    page = client.post(f"/admin/delivery/deliverytarget/{target.pk}/change/", {
        "name": "FAR", "kind": "portal", "url": "https://evil.example", "token": "", "path": "", "description": ""})
    assert page.status_code == 200 and "belongs to the old one" in page.content.decode()
    target.refresh_from_db()
    assert (target.url, target.token) == ("https://far.example", "far-token")


@pytest.mark.parametrize("url, said", [
    ("http://127.0.0.1:8042/instances", "must use https"), ("https://127.0.0.1:8042/", "loopback"),
    ("https://localhost/", "loopback"), ("https://[::1]/", "loopback"), ("https://169.254.169.254/", "link-local"),
    ("https://0.0.0.0/", "unspecified"), ("https://255.255.255.255/", "broadcast"),
    ("https://[::ffff:127.0.0.1]/", "loopback"), ("http://10.0.0.5/", "must use https"),
])
def test_a_target_url_at_the_portals_own_machine_or_in_the_clear_is_refused(staff, url, said):
    response = api_for(staff).post("/api/delivery-targets/", {"name": "X", "kind": "portal", "url": url,
                                                              "token": "t"}, format="json")
    assert response.status_code == 400 and said in str(response.json()["url"]), response.json()
    assert "TRUSTED_HTTP_HOSTS" in str(response.json()["url"]) and not DeliveryTarget.objects.exists()


def test_trusted_http_hosts_allows_a_listed_host_and_port_only(staff, settings):
    settings.TRUSTED_HTTP_HOSTS = ["127.0.0.1:8000", "portal.lan"]
    client = api_for(staff)
    body = {"kind": "portal", "token": "t"}
    assert client.post("/api/delivery-targets/", {**body, "name": "A", "url": "http://127.0.0.1:8000"},
                       format="json").status_code == 201
    assert client.post("/api/delivery-targets/", {**body, "name": "B", "url": "http://127.0.0.1:8042"},
                       format="json").status_code == 400
    assert client.post("/api/delivery-targets/", {**body, "name": "C", "url": "http://portal.lan:9000"},
                       format="json").status_code == 201


class Listener:
    """A loopback HTTP service that is not a portal: it records every request and answers `reply`."""

    def __init__(self, reply=None):
        self.requests: list[tuple[str, str, dict, bytes]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                listener.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, content = (reply or (lambda r: (200, {}, b"{}")))(self)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(content)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            do_OPTIONS = do_POST = do_PATCH = do_HEAD = do_GET = handle_one

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    made = []

    def make(reply=None) -> Listener:
        made.append(Listener(reply))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_a_stored_loopback_target_sends_nothing(retrieved, user, listener, settings):
    service = listener()
    target = DeliveryTarget.objects.create(name="ORTHANC", kind="portal", url=f"{service.url}/instances", token="t")
    before = sha1_tree(retrieved.source)
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=6)
    run_released(job)
    assert job.status == "failed" and service.requests == []
    assert "must use https" in job.items.get().error and "Nothing was sent" in job.items.get().error
    assert sha1_tree(retrieved.source) == before


def test_a_target_that_is_not_a_tus_portal_gets_neither_token_nor_data(retrieved, user, listener, trusted_loopback):
    service = listener()  # answers 200 "{}" to anything, like a PACS's REST API
    target = DeliveryTarget.objects.create(name="ORTHANC", kind="portal", url=service.url, token="secret-token")
    job = DeliveryJob.for_retrieval(retrieved, target, user=user, mode="zip", batch_size=6)
    run_released(job)
    assert job.status == "failed" and "does not answer as a tus 1.0.0 upload endpoint" in job.items.get().error
    assert [r[0] for r in service.requests] == ["OPTIONS"]
    assert "secret-token" not in json.dumps([r[2] for r in service.requests])


def tus_like(location: str = "/api/uploads/1", outcome_body: bytes = b"[]"):
    def reply(request):
        tus = {"Tus-Resumable": "1.0.0"}
        if request.command == "OPTIONS":
            return 204, {**tus, "Tus-Version": "1.0.0", "Tus-Extension": "creation"}, b""
        if request.command == "POST":
            return 201, {**tus, "Location": location, "Upload-Offset": "0"}, b""
        if request.command == "PATCH":
            return 204, {**tus, "Upload-Offset": request.headers["Content-Length"]}, b""
        return 200, {"Content-Type": "application/json"}, outcome_body
    return reply


def test_an_outcome_answered_as_a_list_is_a_named_failure(listener, tmp_path, trusted_loopback):
    service = listener(tus_like())
    (tmp_path / "f.dcm").write_bytes(b"x" * 100)
    with TusSender(f"{service.url}/api/uploads/", "t", retries=0) as sender:
        with pytest.raises(TusError, match="JSON list, not the upload's outcome"):
            sender.send(tmp_path / "f.dcm", "f.dcm")


def test_an_upload_location_on_another_server_is_never_sent_to(listener, tmp_path):
    elsewhere = listener()
    service = listener(tus_like(location=f"{elsewhere.url}/steal"))
    (tmp_path / "f.dcm").write_bytes(b"x" * 100_000)
    with TusSender(f"{service.url}/api/uploads/", "t", chunk_size=1000) as sender:
        with pytest.raises(TusError, match="named an upload on another server"):
            sender.send(tmp_path / "f.dcm", "f.dcm")
    assert elsewhere.requests == []


# --- deleting a server a delivery target names -----------------------------------------------------
def test_deleting_a_server_named_by_a_delivery_target_is_a_409_naming_it(api):
    server = DicomServer.objects.create(name="WEBPACS", ae_title="WEB", host="10.0.0.9", port=104)
    DeliveryTarget.objects.create(name="TOPACS", kind="dicom", server=server)
    response = api.delete("/api/servers/WEBPACS/")
    assert response.status_code == 409
    assert "delivery target(s) TOPACS" in response.json()["error"] and "retrieval" not in response.json()["error"]
    assert DicomServer.objects.filter(name="WEBPACS").exists()
