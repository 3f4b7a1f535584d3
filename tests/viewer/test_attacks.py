"""Attacks on the viewer from outside: the page reaches nothing beyond the portal's own origin (every
request the browser made is recorded), and another account opening a study by its UID learns nothing of
it: the DICOMweb layer finds nothing, no image is drawn, nothing of the patient reaches the browser."""
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
