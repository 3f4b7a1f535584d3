"""/viewer/ over plain HTTP (Django's test client, no browser): every path needs a login, the entry page
opens OHIF's study route, the configuration points at the portal's own /dicomweb/, and nothing but the
installed site's files is served."""
import gzip

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

UID = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture
def alice(client, django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="alice-pass-123")
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", [f"/viewer/?StudyInstanceUIDs={UID}", "/viewer/", "/viewer/viewer",
                                  "/viewer/app-config.js", "/viewer/boot.js", "/viewer/index.html"])
def test_anonymous_visitors_are_sent_to_the_login(client, path):
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer["Location"].startswith(f"{settings.LOGIN_URL}?next=/viewer/")


def test_the_entry_page_opens_the_study_in_ohifs_viewer_route(alice):
    answer = alice.get(f"/viewer/?StudyInstanceUIDs={UID}&hangingProtocolId=@ohif/mnGrid")
    assert answer.status_code == 302
    assert answer["Location"] == f"/viewer/viewer?StudyInstanceUIDs={UID}&hangingProtocolId=%40ohif%2FmnGrid"
    page = alice.get("/viewer/viewer", {"StudyInstanceUIDs": UID})
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert '<script src="/viewer/app-config.js"></script>' in html and "<script>" not in html
    assert "default-src 'self'" in page["Content-Security-Policy"]


def test_the_configuration_reads_the_portals_own_dicomweb(alice):
    answer = alice.get("/viewer/app-config.js")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/javascript")
    body = answer.content.decode()
    assert '"qidoRoot": "/dicomweb"' in body and '"wadoRoot": "/dicomweb"' in body
    assert "http" not in body.replace('"showWarningMessageForCrossOrigin"', "")


def test_the_sites_files_are_served_and_nothing_else(alice):
    bundle = next(settings.VIEWER_ROOT.glob("app.bundle.*.js")).name
    answer = alice.get(f"/viewer/{bundle}")
    assert answer.status_code == 200 and b'__webpack_require__.p = "/viewer/"' in b"".join(answer.streaming_content)
    assert alice.get("/viewer/no-such-chunk.js").status_code == 404
    for outside in ("/viewer/../manage.py", "/viewer/%2e%2e/%2e%2e/manage.py", "/viewer/..%2f..%2fmanage.py"):
        assert alice.get(outside).content.find(b"DJANGO_SETTINGS_MODULE") == -1, outside
    assert alice.post("/viewer/viewer").status_code == 405


def test_scripts_go_gzipped_to_browsers_that_take_it(alice):
    bundle = next(settings.VIEWER_ROOT.glob("app.bundle.*.js"))
    packed = alice.get(f"/viewer/{bundle.name}", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert packed["Content-Encoding"] == "gzip" and packed["Content-Type"] == "text/javascript"
    body = gzip.decompress(b"".join(packed.streaming_content))
    assert body == bundle.read_bytes() and int(packed["Content-Length"]) < len(body) / 3
    plain = alice.get(f"/viewer/{bundle.name}")
    assert "Content-Encoding" not in plain and b"".join(plain.streaming_content) == bundle.read_bytes()
    assert "Accept-Encoding" in packed["Vary"]


def test_a_portal_without_the_viewer_installed_says_so(alice, settings, tmp_path):
    settings.VIEWER_ROOT = tmp_path / "not-installed"
    answer = alice.get("/viewer/viewer")
    assert answer.status_code == 503 and b"make viewer" in answer.content
