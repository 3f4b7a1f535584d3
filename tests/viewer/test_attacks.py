"""Attacks on the viewer from outside: the page reaches nothing beyond the portal's own origin (every
request the browser made is recorded), and another account opening a study by its UID learns nothing of
it: the DICOMweb layer finds nothing, no image is drawn, nothing of the patient reaches the browser. And the
files: a link out of the site is never followed, hostile names get a plain 404, the entry page redirects only
into the viewer, and the install refuses a package that holds links."""
from urllib.parse import urlsplit

import pytest

from tests.viewer.conftest import lit_share, logged_in, open_study, shown_image

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def origin(url: str) -> str:
    if url.startswith("blob:"):  # an object URL names the origin that made it
        url = url[len("blob:"):]
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_the_viewer_loads_nothing_from_outside_the_portals_origin(context_for, live_server, ct_study):
    context = context_for()
    requested = []
    context.on("request", lambda request: requested.append(request.url))
    page = logged_in(context, live_server, ct_study["alice"])
    entry = page.goto(f"{live_server.url}/viewer/?StudyInstanceUIDs={ct_study['study']['StudyInstanceUID']}")
    assert lit_share(shown_image(page)) > 0.15  # loaded in full: the image is on screen

    own = origin(live_server.url)
    foreign = sorted({url for url in requested if not url.startswith("data:") and origin(url) != own})
    assert foreign == []
    assert any("/dicomweb/" in url for url in requested) and any("/viewer/" in url for url in requested)
    policy = entry.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "http" not in policy


def test_another_account_opening_a_study_by_its_uid_sees_nothing_of_it(context_for, live_server, ct_study):
    study, answers, bodies = ct_study["study"], [], []
    context = context_for()
    page = logged_in(context, live_server, ct_study["bob"])

    def record(response):
        if "/dicomweb/" in response.url:
            answers.append((response.status, response.url))
            bodies.append(response.body() if response.status == 200 else b"")

    page.on("response", record)
    open_study(page, live_server, study["StudyInstanceUID"])
    page.get_by_text("One or more of the requested studies are not available").wait_for()

    assert answers and all(status in (204, 404) for status, _ in answers), answers
    assert not any(study["PatientID"].encode() in body for body in bodies)
    assert page.locator("canvas.cornerstone-canvas").count() == 0  # no viewport, so no image of hers
    assert study["PatientID"] not in page.content() and study["PatientName"].split("^")[0] not in page.content()


@pytest.fixture
def alice_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="alice", password="alice-pass-123"))
    return client


@pytest.mark.django_db
def test_a_link_in_the_site_to_a_file_outside_is_never_served(alice_client, settings, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html><head></head></html>")
    (site / "leak.js").symlink_to(secret)
    (site / "up").symlink_to(tmp_path)
    settings.VIEWER_ROOT = site
    for path in ("/viewer/leak.js", "/viewer/up/secret.txt"):
        answer = alice_client.get(path)
        assert answer.status_code == 404 and b"SECRET" not in answer.content, path


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/viewer/a%00b.js", "/viewer/a%00b", "/viewer/%01%7f.css", "/viewer/..%2f..%2f.env",
                                  "/viewer/%2e%2e%5c%2e%2e%5cmanage.py"])
def test_hostile_file_names_get_a_plain_answer_never_an_error_page(alice_client, path):
    answer = alice_client.get(path)
    assert answer.status_code in (200, 404)  # a route name is the viewer's page; a file name that is not one, 404
    assert b"Traceback" not in answer.content and b"SECRET_KEY" not in answer.content


@pytest.mark.django_db
@pytest.mark.parametrize("uid", ["//elsewhere.example/x", "https://elsewhere.example/", "1.2\r\nLocation: //x"])
def test_the_entry_page_only_ever_sends_the_browser_to_the_viewer(alice_client, uid):
    answer = alice_client.get("/viewer/", {"StudyInstanceUIDs": uid})
    assert answer.status_code == 302 and answer["Location"].startswith("/viewer/viewer?StudyInstanceUIDs=")
    assert "\n" not in answer["Location"] and "//" not in answer["Location"]


def test_a_dist_with_a_symbolic_link_is_refused(tmp_path):
    from apps.viewer.site import SiteError, build

    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html><head><script src=\"/a.js\"></script></head></html>")
    (dist / "a.js").write_text('__webpack_require__.p = "/";')
    (dist / "passwd.js").symlink_to("/etc/passwd")
    with pytest.raises(SiteError, match="symbolic links"):
        build(dist, tmp_path / "site")
    assert not (tmp_path / "site").exists()
