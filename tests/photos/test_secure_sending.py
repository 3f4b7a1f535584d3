"""Photos over the secure paths: C-STORE with mutual TLS when the server has it, and STOW-RS over HTTPS
with bearer or basic authentication and the TLS-verify setting (a real HTTPS server in a thread)."""
import base64
import io
import ssl
import threading
from http.server import ThreadingHTTPServer

import pydicom
import pytest

from apps.servers.models import DicomServer
from tests.dicom.test_dicomweb import FakeArchive
from tests.dicom.test_tls import certs, tls_scp  # noqa: F401  (openssl-made CA, server and client certificates)
from tests.fixtures_common import trust_url_host
from tests.photos.conftest import post_photos

pytestmark = pytest.mark.django_db
PART_START = b"Content-Type: application/dicom\r\n\r\n"


def test_c_store_goes_over_tls_with_our_client_certificate(api, photo_settings, tls_scp, certs, rotated_jpeg,  # noqa: F811
                                                           alpha_png):
    server = DicomServer.objects.create(
        name="SECURE", ae_title="TLSPACS", host="127.0.0.1", port=tls_scp.port, tls_enabled=True,
        tls_ca_file=certs["ca"], tls_cert_file=certs["client_cert"], tls_key_file=certs["client_key"])
    response = post_photos(api, [rotated_jpeg, alpha_png], server=server.name)
    assert response.status_code == 200, response.content
    assert sorted(tls_scp.stored) == sorted(i["sopInstanceUID"] for i in response.json()["instances"])
    assert tls_scp.client_subjects == [{"commonName": "portal"}]  # one association, our certificate


def store_everything(body: bytes):
    """A STOW-RS answer that stores every instance of the request: the Referenced SOP Sequence."""
    uids = [pydicom.dcmread(io.BytesIO(part.rsplit(b"\r\n--", 1)[0]), stop_before_pixels=True).SOPInstanceUID
            for part in body.split(PART_START)[1:]]
    return 200, {"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [uid]}} for uid in uids]}}


@pytest.fixture
def https_archive(certs):  # noqa: F811
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeArchive)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs["server_cert"], certs["server_key"])  # signed by a CA nobody trusts
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen, server.answer = [], store_everything
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("auth, secret, expected", [
    ("bearer", "s3cret-token", "Bearer s3cret-token"),
    ("basic", "pa55", "Basic " + base64.b64encode(b"photo:pa55").decode()),
])
def test_stow_rs_over_https_with_auth_and_the_tls_verify_setting(api, photo_settings, https_archive, rotated_jpeg,
                                                                 alpha_png, auth, secret, expected, settings):
    DicomServer.objects.create(name="WEB", ae_title="WEB", host="127.0.0.1", port=443,
                               dicomweb_url=trust_url_host(settings, f"https://127.0.0.1:{https_archive.server_port}/dicom-web"),
                               dicomweb_auth=auth, dicomweb_username="photo", dicomweb_secret=secret)
    photo_settings.backend, photo_settings.timeout_seconds = "dicomweb", 5
    photo_settings.save()

    refused = post_photos(api, [rotated_jpeg], server="WEB")  # the certificate is checked by default
    assert refused.status_code == 502 and refused.json()["code"] == "PACS_REJECTED"
    assert "certificate" in refused.json()["message"] and refused.json()["instances"][0]["status"] == "failed"
    assert https_archive.seen == []

    photo_settings.dicomweb_verify_tls = False
    photo_settings.save()
    response = post_photos(api, [rotated_jpeg, alpha_png], server="WEB")
    assert response.status_code == 200, response.content
    assert [i["status"] for i in response.json()["instances"]] == ["success", "success"]
    ((path, headers, _),) = https_archive.seen  # both photos in one request
    assert path == "/dicom-web/studies"
    assert headers["Authorization"] == expected
